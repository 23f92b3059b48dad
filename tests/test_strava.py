"""Strava reader: localised headers and dates, the real English sample, and typos as errors."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from realdata import real_sample
from typer.testing import CliRunner

from analysis.cli import app
from analysis.errors import EXIT_USER_ERROR, InputFileError, KneeloadError
from analysis.ingest import garmin, read_dataset, strava
from analysis.ingest.detect import detect_format

#: The real English Strava sample, read in place (tests/realdata.py).
REAL = "formats/strava/activities_sample.csv"
#: A synthetic English export in the real header's shape (for checks that need no real data).
ENGLISH = (
    "Activity ID,Activity Date,Activity Name,Activity Type,Elapsed Time,Distance,"
    "Elapsed Time,Moving Time,Distance\n"
    '1,"Mar 17, 2025, 6:05:42 AM",Easy run,Run,1900,6.10,1900.0,1860.0,6102.3\n'
    '2,"Mar 18, 2025, 5:40:00 PM",Ride home,Ride,2700,15.00,2700.0,2650.0,15000.0\n'
)


def write(folder: Path, text: str, runner: str = "ann") -> Path:
    (folder / runner).mkdir(parents=True, exist_ok=True)
    path = folder / runner / "activities.csv"
    path.write_text(text, encoding="utf-8")
    return folder


# German: header names from a public 92-column German export header; display Distanz with a
# decimal comma, second Distanz in metres; dates day-first "dd.mm.yyyy, HH:MM:SS" (UTC).
GERMAN = (
    "Aktivitäts-ID,Aktivitätsdatum,Name der Aktivität,Aktivitätsart,Verstrichene Zeit,Distanz,"
    "Verstrichene Zeit,Bewegungszeit,Distanz,Durchschnittliche Herzfrequenz\n"
    '1,"20.09.2026, 14:12:12",Abendlauf,Lauf,1400,"10,20",1400.0,1390.0,10200.5,148\n'
    '2,"03.10.2026, 05:00:00",Radfahrt,Radfahrt,3600,"30,00",3600.0,3500.0,30000.0,\n'
)
FRENCH = (
    "ID de l'activité,Date de l'activité,Nom de l'activité,Type d'activité,Temps écoulé,"
    "Distance,Temps écoulé,Durée de déplacement,Distance\n"
    '1,17 mars 2025 à 06:05:42,Sortie,Course à pied,1900,"6,10",1900.0,1860.0,6102.3\n'
    '2,3 févr. 2025 à 23:30:00,Nuit,Course à pied,600,"2,00",600.0,590.0,2000.0\n'
)
DUTCH = (
    "Activiteit-ID,Datum van activiteit,Naam activiteit,Activiteitstype,Verstreken tijd,"
    "Afstand,Verstreken tijd,Beweegtijd,Afstand\n"
    '1,"1 jul 2026, 16:52:24",Rondje,Hardlopen,1800,"5,00",1800.0,1750.0,5000.0\n'
    '2,"7 mrt 2026, 06:00:00",Rondje,Hardlopen,1800,"5,00",1800.0,1750.0,5000.0\n'
)
SPANISH = (
    "ID de actividad,Fecha de la actividad,Nombre de la actividad,Tipo de actividad,"
    "Tiempo transcurrido,Distancia,Tiempo transcurrido,Tiempo en movimiento,Distancia\n"
    '1,"14 ene 2025, 07:00:00",Rodaje,Carrera,2400,"8,00",2400.0,2300.0,8000.0\n'
)


def runs_of(folder: Path, **kwargs) -> pd.DataFrame:
    """The reader itself (read_dataset does not pass dayfirst/date_format yet)."""
    return strava.read_strava(folder, **kwargs)[0]["runs"]


def test_german_export(tmp_path: Path) -> None:
    runs = runs_of(write(tmp_path, GERMAN), timezone="Europe/Berlin")
    # 14:12:12 UTC = 16:12:12 in Berlin (CEST); metres column used; moving time 1390 s
    assert runs["date"].tolist() == [pd.Timestamp("2026-09-20 16:12:12"),
                                     pd.Timestamp("2026-10-03 07:00:00")]
    assert runs["distance_km"].tolist() == [10200.5, 30000.0]
    assert runs["distance_unit"].tolist() == ["m", "m"]
    assert runs["duration_min"].tolist() == [1390 / 60, 3500 / 60]
    assert runs["activity_type"].tolist() == ["Lauf", "Radfahrt"]


@pytest.mark.parametrize(("text", "dates", "types"), [
    (FRENCH, ["2025-03-17 06:05:42", "2025-02-03 23:30:00"], ["Run", "Run"]),
    (DUTCH, ["2026-07-01 16:52:24", "2026-03-07 06:00:00"], ["Run", "Run"]),
    (SPANISH, ["2025-01-14 07:00:00"], ["Run"]),
])
def test_localised_exports(tmp_path: Path, text: str, dates: list[str], types: list[str]
                           ) -> None:
    runs = runs_of(write(tmp_path, text))
    assert runs["date"].tolist() == [pd.Timestamp(d) for d in dates]
    assert runs["activity_type"].tolist() == types  # localised run names -> "Run"


@pytest.mark.parametrize(("language", "header"), [
    ("it", "ID attività,Data attività,Tipo attività,Distanza,Tempo in movimento"),
    ("pt", "ID da atividade,Data da atividade,Tipo de atividade,Distância"),
    ("sv", "Aktivitets-ID,Aktivitetsdatum,Aktivitetstyp,Distans,Tid i rörelse"),
    ("no", "Aktivitets-ID,Aktivitetsdato,Aktivitetstype,Distanse,Bevegelsestid"),
    ("de", GERMAN.splitlines()[0]),
    ("en", "Activity ID,Activity Date,Activity Type,Distance"),
])
def test_header_language(language: str, header: str) -> None:
    assert strava.header_language(header.split(",")) == language


def test_month_names_in_every_language() -> None:
    got = {t: strava.month_number(t) for t in
           ("juil.", "juin", "févr.", "mrt", "Okt", "dez.", "des", "mag", "ago", "ene", "gen",
            "maj", "mei", "set.", "out", "Mär", "ju", "foo")}
    assert got == {"juil.": 7, "juin": 6, "févr.": 2, "mrt": 3, "Okt": 10, "dez.": 12,
                   "des": 12, "mag": 5, "ago": 8, "ene": 1, "gen": 1, "maj": 5, "mei": 5,
                   "set.": 9, "out": 10, "Mär": 3, "ju": None, "foo": None}


def test_unknown_header_names_the_file_and_the_column(tmp_path: Path) -> None:
    write(tmp_path, "Aktivitäts-ID,Aktivitätsdatum,Typ,Strecke\n1,x,Lauf,5\n")
    with pytest.raises(InputFileError) as err:
        runs_of(tmp_path)
    line = err.value.one_line()
    assert "\n" not in line
    assert line.startswith("ann/activities.csv, column 'Activity Type': not a Strava "
                           "activities export in a known language (English, German, French")


def test_auto_detects_a_localised_export(tmp_path: Path) -> None:
    fmt, why = detect_format(write(tmp_path, FRENCH))
    assert fmt == "strava" and "(fr)" in why


def test_real_english_sample_still_reads(tmp_path: Path) -> None:
    write(tmp_path, real_sample(REAL).read_text(encoding="utf-8"))
    runs = runs_of(tmp_path)
    assert len(runs) == 45
    assert runs["date"].iloc[0] == pd.Timestamp("2025-07-14 14:19:19")  # UTC
    assert runs["distance_km"].iloc[0] == 7544.10009765625  # the metres column
    assert runs["duration_min"].iloc[0] == 2348.0 / 60  # Moving Time, s
    assert runs["activity_type"].value_counts().to_dict() == {"Ride": 21, "Run": 17, "Hike": 7}


# --- typos are errors ------------------------------------------------------------------------
NUMERIC_EN = ("Activity ID,Activity Date,Activity Type,Distance\n"
              "1,\"{a}, 07:00:00\",Run,5.0\n2,\"{b}, 07:00:00\",Run,5.0\n")


def test_timezone_typo_suggests_the_zone(tmp_path: Path) -> None:
    write(tmp_path, ENGLISH)
    with pytest.raises(KneeloadError) as err:
        runs_of(tmp_path, timezone="Toronto")
    assert err.value.one_line() == (f"{tmp_path}: --timezone 'Toronto' is not an IANA time "
                                    "zone; did you mean 'America/Toronto'?")
    with pytest.raises(KneeloadError, match="did you mean 'Europe/Oslo'"):
        strava.check_timezone("Europe/Olso")
    assert strava.check_timezone("Europe/Oslo") == "Europe/Oslo"


def test_distance_unit_typo(tmp_path: Path) -> None:
    with pytest.raises(KneeloadError) as err:
        read_dataset(tmp_path, format="garmin", distance_unit="furlongs")
    assert err.value.one_line() == (f"{tmp_path}: --distance-unit 'furlongs' is not a distance "
                                    "unit; use one of km, mi, m")
    assert garmin.check_distance_unit(" MI ") == "mi"


def test_ambiguous_month_first_dates(tmp_path: Path) -> None:
    write(tmp_path, NUMERIC_EN.format(a="03/04/2025", b="05/06/2025"))
    with pytest.raises(KneeloadError) as err:
        runs_of(tmp_path)
    assert err.value.one_line() == (
        "ann/activities.csv, column 'Activity Date': dates such as '03/04/2025' are ambiguous: "
        "every day and month value is 12 or less, so day-first and month-first both parse; "
        "pass --dayfirst or --no-dayfirst (or --date-format)")
    # told the order, the same file reads
    assert runs_of(tmp_path, dayfirst=False)["date"].tolist() == [
        pd.Timestamp("2025-03-04 07:00"), pd.Timestamp("2025-05-06 07:00")]


def test_day_first_dates_given_to_a_month_first_reader(tmp_path: Path) -> None:
    write(tmp_path, NUMERIC_EN.format(a="03/04/2025", b="25/06/2025"))
    with pytest.raises(KneeloadError) as err:
        runs_of(tmp_path)
    assert err.value.one_line() == (
        "ann/activities.csv, column 'Activity Date': dates such as '25/06/2025' only parse "
        "day-first, but this reader reads month-first: pass --dayfirst (or --date-format, "
        "e.g. '%d/%m/%Y %H:%M:%S')")


def test_explicit_order_or_format_reads_numeric_dates() -> None:
    cells = pd.Series(["03/04/2025, 07:00:00", "25/06/2025, 19:30:00"])
    day_first = strava.parse_activity_dates(cells, dayfirst=True)
    assert day_first.tolist() == [pd.Timestamp("2025-04-03 07:00"),
                                  pd.Timestamp("2025-06-25 19:30")]
    month_first = strava.parse_activity_dates(cells, dayfirst=False)
    assert month_first.iloc[0] == pd.Timestamp("2025-03-04 07:00")
    assert pd.isna(month_first.iloc[1])  # month 25: left for cleaning to quarantine
    fmt = strava.parse_activity_dates(cells, date_format="%d/%m/%Y, %H:%M:%S")
    assert fmt.tolist() == day_first.tolist()
    # English 12-hour clock and ISO dates in any language
    assert strava.parse_activity_dates(pd.Series(["Jul 4, 2025, 12:05:00 AM",
                                                  "2025-03-09"])).tolist() == [
        pd.Timestamp("2025-07-04 00:05"), pd.Timestamp("2025-03-09")]


def test_cli_turns_a_typo_into_one_line_and_exit_2(tmp_path: Path) -> None:
    write(tmp_path / "raw", ENGLISH)
    result = CliRunner().invoke(app, ["build", str(tmp_path / "raw"), "--out",
                                      str(tmp_path / "out"), "--timezone", "Toronto"])
    assert result.exit_code == EXIT_USER_ERROR
    assert "did you mean 'America/Toronto'?" in result.output
    assert "Traceback" not in result.output
