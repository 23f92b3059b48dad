"""Reader for Strava bulk exports: one folder per runner holding ``activities.csv``.

Layout: ``RAW/<runner_id>/activities.csv`` (or a single ``RAW/activities*.csv`` for one
runner named after ``RAW``), plus optional canonical ``runners``, ``pain`` (or a wide pain
diary) and ``shoes`` files in ``RAW``. Only activity rows become runs records; free-text
columns (name, description, private note) are never read.

Format facts (``shared/data/real/formats/README.md``, checked on a real export):

- ``Activity Date`` is UTC, written ``Mar 17, 2025, 6:05:42 AM``; the local day needs the
  runner's time zone (``timezone=``; default UTC, noted in the report).
- ``Distance`` appears twice: the first in the account's display unit (km or miles), the
  second in metres. The metres column is used; the display unit is inferred from the ratio
  of the two (median near 1000 -> km, near 1609 -> miles) for rows lacking metres.
- ``Moving Time`` is float seconds (the first ``Elapsed Time`` is the fallback).
- ``Activity Gear`` is the gear's display name -> ``shoe_id``.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
import zoneinfo
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.errors import InputFileError, KneeloadError
from analysis.ingest._io import (
    ACTIVITY_FILE,
    DATE_AS_WRITTEN,
    HAS_TIME,
    SOURCE_ISSUE,
    FileInfo,
    format_has_time,
    read_text_table,
    refused_as_written,
    text_cells,
    typed_number,
)
from analysis.ingest.exports import read_export_folder
from analysis.schemas import SOURCE_FILE, SOURCE_LINE

EXPORT_PATTERNS = ("activities*.csv",)
STRAVA_DATE_FORMAT = "%b %d, %Y, %I:%M:%S %p"  # "Mar 17, 2025, 6:05:42 AM", UTC
#: Median metres per display unit that identifies the unit (1000 m/km, 1609.344 m/mile);
#: a ratio within 10 % of one of them decides.
DISPLAY_UNITS = {"km": 1000.0, "mi": 1609.344}
UNIT_RATIO_TOLERANCE = 0.10
SECONDS_PER_MINUTE = 60.0
REQUIRED_HEADERS = ("Activity Date", "Activity Type", "Distance")

# --- localised headers ----------------------------------------------------------------------
# Strava translates the activities.csv header (and the date) into the account's language.
# Only the columns this reader uses are mapped. Where each name was seen (public files found
# with the library search; "unverified" = not found in any public file, our translation):
#   de: a Rust test constant HEADER_GERMAN_92 (full 92-column German header, with a row
#       "20.09.2026, 14:12:12" and Distanz "10,20"), a Kotlin test
#       stravaGermanCsvUsesTheActivityDateAndRichSummaryColumns ("21.07.2026, 15:09:27") and
#       a Python Strava-zip importer reading Aktivitätsdatum / Bewegungszeit / Dateiname.
#   fr: a Python test (csv_enricher) with the header "ID de l'activité, Date de l'activité,
#       Nom de l'activité, Type d'activité, ..., Temps écoulé, Distance, Fréquence cardiaque
#       max., ..., Matériel utilisé pour l'activité, Nom du fichier, ..., Durée de
#       déplacement"; dates "14 juil. 2025 à 14:19:19" from a Python notebook helper
#       (preprocess_date_column) that splits Date de l'activité on "à" and maps janv. ... déc.
#   es: a Python reader (COLUMN_ALIASES: ID de actividad, Tipo de actividad, Distancia,
#       Tiempo transcurrido, Tiempo en movimiento, Nombre del archivo, Esfuerzo Percibido) and
#       a JavaScript test ("ID de actividad,Fecha de la actividad,..."). Date format not seen:
#       "14 jul 2025, 14:19:19"-style day-first with Spanish month names is assumed.
#   nl: a JavaScript csvImport.js (datum van activiteit, activiteitstype, afstand, beweegtijd,
#       verstreken tijd, gemiddelde hartslag, max. hartslag; dates "1 jul 2026, 16:52:24").
#   it, pt, sv, no: unverified (no public Strava export in these languages was found).
STRAVA_HEADERS: dict[str, dict[str, str]] = {
    "en": {h: h for h in ("Activity ID", "Activity Date", "Activity Type", "Distance",
                          "Elapsed Time", "Moving Time", "Activity Gear",
                          "Perceived Exertion", "Average Heart Rate", "Max Heart Rate",
                          "Filename")},
    "de": {"Aktivitäts-ID": "Activity ID", "Aktivitätsdatum": "Activity Date",
           "Aktivitätsart": "Activity Type", "Distanz": "Distance",
           "Verstrichene Zeit": "Elapsed Time", "Bewegungszeit": "Moving Time",
           "Aktivitätsausrüstung": "Activity Gear", "Gefühlte Anstrengung": "Perceived Exertion",
           "Durchschnittliche Herzfrequenz": "Average Heart Rate",
           "Max. Herzfrequenz": "Max Heart Rate", "Dateiname": "Filename"},
    "fr": {"ID de l'activité": "Activity ID", "Date de l'activité": "Activity Date",
           "Type d'activité": "Activity Type", "Distance": "Distance",
           "Temps écoulé": "Elapsed Time", "Durée de déplacement": "Moving Time",
           "Matériel utilisé pour l'activité": "Activity Gear",
           "Fréquence cardiaque max.": "Max Heart Rate", "Nom du fichier": "Filename",
           # unverified:
           "Effort perçu": "Perceived Exertion",
           "Fréquence cardiaque moyenne": "Average Heart Rate"},
    "es": {"ID de actividad": "Activity ID", "Fecha de la actividad": "Activity Date",
           "Tipo de actividad": "Activity Type", "Distancia": "Distance",
           "Tiempo transcurrido": "Elapsed Time", "Tiempo en movimiento": "Moving Time",
           "Esfuerzo Percibido": "Perceived Exertion", "Nombre del archivo": "Filename",
           # unverified:
           "Equipo de la actividad": "Activity Gear",
           "Frecuencia cardíaca promedio": "Average Heart Rate",
           "Frecuencia cardíaca máxima": "Max Heart Rate"},
    "nl": {"Datum van activiteit": "Activity Date", "Activiteitstype": "Activity Type",
           "Afstand": "Distance", "Verstreken tijd": "Elapsed Time",
           "Beweegtijd": "Moving Time", "Gemiddelde hartslag": "Average Heart Rate",
           "Max. hartslag": "Max Heart Rate",
           # unverified:
           "Activiteits-ID": "Activity ID", "Activiteitsdatum": "Activity Date",
           "Uitrusting voor activiteit": "Activity Gear",
           "Waargenomen inspanning": "Perceived Exertion", "Bestandsnaam": "Filename"},
    # unverified (our translations of Strava's English names):
    "it": {"ID attività": "Activity ID", "Data attività": "Activity Date",
           "Tipo attività": "Activity Type", "Distanza": "Distance",
           "Tempo trascorso": "Elapsed Time", "Tempo in movimento": "Moving Time",
           "Attrezzatura attività": "Activity Gear", "Sforzo percepito": "Perceived Exertion",
           "Frequenza cardiaca media": "Average Heart Rate",
           "Frequenza cardiaca massima": "Max Heart Rate", "Nome file": "Filename"},
    "pt": {"ID da atividade": "Activity ID", "Data da atividade": "Activity Date",
           "Tipo de atividade": "Activity Type", "Distância": "Distance",
           "Tempo decorrido": "Elapsed Time", "Tempo em movimento": "Moving Time",
           "Equipamento da atividade": "Activity Gear",
           "Esforço percebido": "Perceived Exertion",
           "Frequência cardíaca média": "Average Heart Rate",
           "Frequência cardíaca máxima": "Max Heart Rate", "Nome do arquivo": "Filename"},
    "sv": {"Aktivitets-ID": "Activity ID", "Aktivitetsdatum": "Activity Date",
           "Aktivitetstyp": "Activity Type", "Distans": "Distance",
           "Förfluten tid": "Elapsed Time", "Tid i rörelse": "Moving Time",
           "Aktivitetsutrustning": "Activity Gear", "Upplevd ansträngning": "Perceived Exertion",
           "Genomsnittlig puls": "Average Heart Rate", "Maxpuls": "Max Heart Rate",
           "Filnamn": "Filename"},
    "no": {"Aktivitets-ID": "Activity ID", "Aktivitetsdato": "Activity Date",
           "Aktivitetstype": "Activity Type", "Distanse": "Distance",
           "Medgått tid": "Elapsed Time", "Bevegelsestid": "Moving Time",
           "Aktivitetsutstyr": "Activity Gear", "Opplevd anstrengelse": "Perceived Exertion",
           "Gjennomsnittlig puls": "Average Heart Rate", "Makspuls": "Max Heart Rate",
           "Filnavn": "Filename"},
}
LANGUAGE_NAMES = {"en": "English", "de": "German", "fr": "French", "es": "Spanish",
                  "nl": "Dutch", "it": "Italian", "pt": "Portuguese", "sv": "Swedish",
                  "no": "Norwegian"}

#: Localised ``Activity Type`` values of runs -> Strava's English name, so that cleaning's
#: running filter (English "Run", German "Lauf", Swedish "Löpning") sees a run. de "Lauf",
#: fr "Course à pied", es "Carrera", nl "Hardlopen" were seen in the files cited above; the
#: trail/virtual variants and it/pt/no are unverified.
RUN_TYPES = {"course à pied": "Run", "course à pied sur sentier": "Trail Run",
             "trail": "Trail Run", "carrera": "Run", "carrera por montaña": "Trail Run",
             "hardlopen": "Run", "trailrunning": "Trail Run", "corsa": "Run",
             "corsa su sentiero": "Trail Run", "corrida": "Run",
             "corrida em trilha": "Trail Run", "løping": "Run", "terrengløping": "Trail Run"}

# --- localised dates ------------------------------------------------------------------------
#: Month names (full; abbreviations are matched as unique prefixes of at least 3 letters,
#: accents and a trailing dot ignored: "juil." -> juillet, "févr." -> février).
MONTHS = {
    "en": "january february march april may june july august september october november "
          "december",
    "de": "januar februar märz april mai juni juli august september oktober november dezember",
    "fr": "janvier février mars avril mai juin juillet août septembre octobre novembre "
          "décembre",
    "es": "enero febrero marzo abril mayo junio julio agosto septiembre octubre noviembre "
          "diciembre",
    "nl": "januari februari maart april mei juni juli augustus september oktober november "
          "december",
    "it": "gennaio febbraio marzo aprile maggio giugno luglio agosto settembre ottobre "
          "novembre dicembre",
    "pt": "janeiro fevereiro março abril maio junho julho agosto setembro outubro novembro "
          "dezembro",
    "sv": "januari februari mars april maj juni juli augusti september oktober november "
          "december",
    "no": "januar februar mars april mai juni juli august september oktober november desember",
}
MONTH_ABBREVIATIONS = {"mrt": 3, "sept": 9, "set": 9}  # Dutch maart; sept./set. (it, pt)
MIN_MONTH_PREFIX = 3
MONTHS_PER_YEAR = 12
#: Languages whose Strava dates are written with the month first (only English).
MONTH_FIRST_LANGUAGES = frozenset({"en"})
_TIME = r"(?:\D+?(\d{1,2})[:.h](\d{2})(?:[:.](\d{2}))?)?\s*([ap]\.?\s?m\.?)?\s*$"
_NUMERIC = re.compile(r"^\s*(\d{1,4})[./-](\d{1,2})[./-](\d{1,4})" + _TIME, re.IGNORECASE)
_NAMED_DMY = re.compile(r"^\s*(\d{1,2})\.?\s+(?:de\s+)?([^\W\d_]+)\.?,?\s+(?:de\s+)?(\d{4})"
                        + _TIME, re.IGNORECASE)
_NAMED_MDY = re.compile(r"^\s*([^\W\d_]+)\.?\s+(\d{1,2}),?\s+(\d{4})" + _TIME,
                        re.IGNORECASE)


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c)).strip(" .")


_MONTH_NAMES = [(_fold(name), i + 1) for names in MONTHS.values()
                for i, name in enumerate(names.split())]


def month_number(token: str) -> int | None:
    """Month (1-12) of a month name or abbreviation in any supported language, else None."""
    key = _fold(token)
    if key in MONTH_ABBREVIATIONS:
        return MONTH_ABBREVIATIONS[key]
    if len(key) < MIN_MONTH_PREFIX:
        return None
    found = {month for name, month in _MONTH_NAMES if name.startswith(key)}
    return found.pop() if len(found) == 1 else None


def header_language(header: list[str]) -> str | None:
    """The language of a Strava activities header (see :data:`STRAVA_HEADERS`), or None.

    A language fits when its names for every :data:`REQUIRED_HEADERS` column are present;
    among those the one naming most columns wins (English first on a tie).
    """
    cells = {h.strip() for h in header}
    best, best_n = None, 0
    for language, names in STRAVA_HEADERS.items():
        present = {english for local, english in names.items() if local in cells}
        if set(REQUIRED_HEADERS) <= present and len(present) > best_n:
            best, best_n = language, len(present)
    return best


def english_header(header: list[str], *, language: str) -> list[str]:
    """Header cells translated to Strava's English names (unknown cells unchanged)."""
    names = STRAVA_HEADERS[language]
    return [names.get(h.strip(), h.strip()) for h in header]


def _unknown_header(header: list[str], *, name: str) -> InputFileError:
    cells = {h.strip() for h in header}
    seen = {english for names in STRAVA_HEADERS.values()
            for local, english in names.items() if local in cells}
    # a required column no language names, else (mixed languages) the first required one
    missing = next((h for h in REQUIRED_HEADERS if h not in seen), REQUIRED_HEADERS[0])
    languages = ", ".join(LANGUAGE_NAMES.values())
    return InputFileError(
        f"not a Strava activities export in a known language ({languages}): no column for "
        f"{missing!r}; found columns: {', '.join(header[:8])}"
        f"{', ...' if len(header) > 8 else ''}", file=name, column=missing)


def check_timezone(timezone: str, *, file: str | Path | None = None) -> str:
    """``timezone`` if it is an IANA zone name; else a :class:`KneeloadError` naming
    ``--timezone`` and suggesting the closest zone ("Toronto" -> "America/Toronto")."""
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        pass
    else:
        return timezone
    zones = sorted(zoneinfo.available_timezones())
    key = timezone.strip().replace(" ", "_").casefold()
    by_city = [z for z in zones if z.casefold() == key or z.casefold().endswith(f"/{key}")]
    by_spelling = difflib.get_close_matches(timezone, zones, n=1, cutoff=0.6)
    hint = (by_city or by_spelling)[:1]
    suggestion = f"; did you mean {hint[0]!r}?" if hint else " (e.g. 'Europe/Oslo')"
    raise KneeloadError(f"--timezone {timezone!r} is not an IANA time zone{suggestion}",
                        file=file)


def _named_month(values: pd.Series) -> pd.Series:
    return values.map(lambda t: month_number(t) if isinstance(t, str) else None) \
        .astype("Float64")


def _assemble(year: pd.Series, month: pd.Series, day: pd.Series, parts: pd.DataFrame
              ) -> pd.Series:
    hour = pd.to_numeric(parts[3], errors="coerce").fillna(0)
    pm = parts[6].fillna("").str.lower().str.startswith("p")
    am = parts[6].fillna("").str.lower().str.startswith("a")
    hour = hour.where(~(pm | am), hour % MONTHS_PER_YEAR + np.where(pm, 12, 0))
    frame = pd.DataFrame({
        "year": pd.to_numeric(year, errors="coerce"), "month": month, "day": day,
        "hour": hour, "minute": pd.to_numeric(parts[4], errors="coerce").fillna(0),
        "second": pd.to_numeric(parts[5], errors="coerce").fillna(0)}).astype("float64")
    ok = frame.notna().all(axis=1)
    out = pd.Series(pd.NaT, index=year.index, dtype="datetime64[us]")
    if ok.any():
        out[ok] = pd.to_datetime(frame[ok], errors="coerce")
    return out


def parse_activity_dates(text: pd.Series, *, language: str = "en", dayfirst: bool | None = None,
                         date_format: str | None = None, file: str | None = None
                         ) -> pd.Series:
    """Strava ``Activity Date`` cells (any supported language) -> naive datetime64 (as
    written, UTC); NaT where a cell does not parse.

    Shapes read: English ``Mar 17, 2025, 6:05:42 AM``; day, month name, year with a 24 h
    time (``14 juil. 2025 à 14:19:19``, ``1 jul 2026, 16:52:24``); numeric dates
    (``20.09.2026, 14:12:12``, ``2025-03-09``). Numeric dates are day-first in every
    language but English; ``dayfirst`` overrides, ``date_format`` (strptime) replaces all.

    Raises
    ------
    KneeloadError
        A file dated only numerically, read month-first (English, ``dayfirst`` not given),
        whose dates are ambiguous
        (every day and month value <= 12) or that only parse day-first; names
        ``--dayfirst`` / ``--date-format`` and the file.
    """
    if date_format is not None:
        return pd.to_datetime(text, format=date_format, errors="coerce").astype("datetime64[us]")
    out = pd.Series(pd.NaT, index=text.index, dtype="datetime64[us]")
    if language == "en":
        out = pd.to_datetime(text, format=STRAVA_DATE_FORMAT, errors="coerce") \
            .astype("datetime64[us]")
    todo = out.isna() & text.notna()
    if not todo.any():
        return out
    rest = text[todo].astype("str")
    numeric = rest.str.extract(_NUMERIC)
    named_dmy = rest.str.extract(_NAMED_DMY)
    named_mdy = rest.str.extract(_NAMED_MDY)
    got = pd.Series(pd.NaT, index=rest.index, dtype="datetime64[us]")
    dmy = named_dmy[0].notna()
    if dmy.any():
        p = named_dmy[dmy]
        got[dmy] = _assemble(p[2], _named_month(p[1]), pd.to_numeric(p[0]), p)
    mdy = named_mdy[0].notna() & got.isna()
    if mdy.any():
        p = named_mdy[mdy]
        got[mdy] = _assemble(p[2], _named_month(p[0]), pd.to_numeric(p[1]), p)
    num = numeric[0].notna() & got.isna()
    if num.any():
        p = numeric[num]
        first, second, third = (pd.to_numeric(p[i]) for i in range(3))
        ymd = p[0].str.len() == 4
        order_dmy = (language not in MONTH_FIRST_LANGUAGES) if dayfirst is None else dayfirst
        # the file's own shape is numeric (no cell had a month name): check the order; a
        # stray numeric cell among month-name dates is read month-first (or quarantined)
        numeric_file = not (out.notna().any() or got.notna().any())
        if dayfirst is None and not order_dmy and numeric_file and (~ymd).any():
            _check_month_first(p[~ymd], first[~ymd], second[~ymd], file=file)
        day = np.where(ymd, third, first if order_dmy else second)
        month = np.where(ymd, second, second if order_dmy else first)
        year = pd.Series(np.where(ymd, first, third), index=p.index)
        got[num] = _assemble(year, pd.Series(month, index=p.index, dtype="float64"),
                             pd.Series(day, index=p.index, dtype="float64"), p)
    out[todo] = got
    return out


def _check_month_first(cells: pd.DataFrame, first: pd.Series, second: pd.Series, *,
                       file: str | None) -> None:
    example = "/".join(cells.iloc[0, :3])
    if (first > MONTHS_PER_YEAR).any():
        bad = cells[first > MONTHS_PER_YEAR].iloc[0, :3]
        raise KneeloadError(
            f"dates such as {'/'.join(bad)!r} only parse day-first, but this reader reads "
            "month-first: pass --dayfirst (or --date-format, e.g. '%d/%m/%Y %H:%M:%S')",
            file=file, column="Activity Date")
    if ((first <= MONTHS_PER_YEAR) & (second <= MONTHS_PER_YEAR)).all():
        raise KneeloadError(
            f"dates such as {example!r} are ambiguous: every day and month value is 12 or "
            "less, so day-first and month-first both parse; pass --dayfirst or "
            "--no-dayfirst (or --date-format)", file=file, column="Activity Date")


def local_datetime(utc_text: pd.Series, *, timezone: str, language: str = "en",
                   dayfirst: bool | None = None, date_format: str | None = None,
                   file: str | None = None
                   ) -> tuple[pd.Series, pd.Series, pd.Series | None]:
    """Strava UTC ``Activity Date`` strings -> local wall-clock datetime64, which cells had
    a time of day, and the cells that did not parse.

    Parsing: :func:`parse_activity_dates`. A time of day is a UTC instant, converted to
    ``timezone``; a cell without one (``2024-03-05``, or every cell of a ``date_format``
    without a time, :func:`analysis.ingest._io.format_has_time`) is a calendar day, kept
    as written (review: converting its midnight moved it a day back west of UTC). A cell
    that does not parse is NaT, its text kept in the third value
    (:func:`analysis.ingest._io.refused_as_written`; None when every cell parsed): clean
    quarantines it as ``unparseable_date`` with the text as written, and never reads it
    again as ISO 8601 (as local time, it would skip the UTC conversion).
    """
    parsed = parse_activity_dates(utc_text, language=language, dayfirst=dayfirst,
                                  date_format=date_format, file=file)
    if date_format is not None:
        timed = pd.Series(format_has_time(date_format), index=utc_text.index)
    else:  # every Strava date format with a time writes it as H:MM[:SS]
        timed = text_cells(utc_text).str.contains(":", regex=False).fillna(False).astype(bool)
    local = parsed.dt.tz_localize("UTC").dt.tz_convert(timezone).dt.tz_localize(None)
    local = local.astype("datetime64[us]").where(timed, parsed.astype("datetime64[us]"))
    return local, timed & parsed.notna(), refused_as_written(parsed, utc_text)


def _indices(header: list[str], name: str) -> list[int]:
    return [i for i, h in enumerate(header) if h == name]


def display_unit(display: pd.Series, metres: pd.Series) -> str | None:
    """The display unit of Strava's first ``Distance`` column, from rows holding both."""
    both = (display > 0) & (metres > 0)
    if not both.any():
        return None
    ratio = float(np.median(metres[both] / display[both]))
    for unit, m_per_unit in DISPLAY_UNITS.items():
        if abs(ratio / m_per_unit - 1) <= UNIT_RATIO_TOLERANCE:
            return unit
    return None


def read_activities(path: Path, *, name: str, runner_id: str, timezone: str = "UTC",
                    dayfirst: bool | None = None, date_format: str | None = None
                    ) -> tuple[pd.DataFrame, FileInfo, list[str]]:
    """One Strava ``activities.csv`` (any language of :data:`STRAVA_HEADERS`) -> raw runs
    records (all activity types), notes."""
    parsed, info = read_text_table(path, name=name)
    n = len(parsed.cells)
    language = header_language(parsed.header)
    if language is None:
        raise _unknown_header(parsed.header, name=name)
    header = english_header(parsed.header, language=language)
    notes: list[str] = []
    if language != "en":
        notes.append(f"{name}: Strava header in {LANGUAGE_NAMES[language]}")

    def col(column: str, occurrence: int = 0) -> pd.Series:
        idx = _indices(header, column)
        if len(idx) <= occurrence:
            return pd.Series([pd.NA] * n, dtype="str")
        return parsed.cells[idx[occurrence]]

    display, metres = col("Distance", 0), col("Distance", 1)
    disp_num = pd.to_numeric(display.str.replace(",", ".", regex=False), errors="coerce")
    m_num = pd.to_numeric(metres, errors="coerce")
    unit = display_unit(disp_num, m_num)
    if unit is None:
        unit = "km"
        if (disp_num.notna() & m_num.isna()).any():
            notes.append(f"{name}: display unit of the first Distance column unknown, "
                         "assumed km")
    use_m = m_num.notna()
    distance = display.where(~use_m, metres)
    dist_unit = pd.Series(np.where(use_m, "m", unit), dtype="str").where(distance.notna())
    moving = pd.to_numeric(col("Moving Time"), errors="coerce")
    elapsed = pd.to_numeric(col("Elapsed Time", 0), errors="coerce")
    seconds = moving.where(moving > 0, elapsed)
    duration = seconds / SECONDS_PER_MINUTE
    activity = col("Activity Type")
    linked = col("Filename")
    folder = Path(name).parent
    linked = linked.where(linked.isna(), linked.map(
        lambda f: (folder / f.strip()).as_posix() if isinstance(f, str) and f.strip() else None,
        na_action="ignore")).astype("str")
    activity = activity.where(~activity.str.casefold().isin(RUN_TYPES),
                              activity.str.casefold().map(RUN_TYPES))
    date, timed, refused = local_datetime(col("Activity Date"), timezone=timezone,
                                          language=language, dayfirst=dayfirst,
                                          date_format=date_format, file=name)
    frame = pd.DataFrame({
        "runner_id": pd.Series([runner_id] * n, dtype="str"),
        "date": date,
        HAS_TIME: timed,
        **({DATE_AS_WRITTEN: refused} if refused is not None else {}),
        "distance_km": typed_number(distance),
        "distance_unit": dist_unit,
        "duration_min": duration,
        "activity_type": activity.astype("str"),
        "shoe_id": col("Activity Gear"),
        "rpe": typed_number(col("Perceived Exertion")),
        "avg_hr_bpm": typed_number(col("Average Heart Rate")),
        # the bulk export repeats "Max Heart Rate" (columns 7 and 30): the first filled one
        "max_hr_bpm": typed_number(col("Max Heart Rate")).combine_first(
            typed_number(col("Max Heart Rate", 1))),
        ACTIVITY_FILE: linked,
        SOURCE_FILE: pd.Series([name] * n, dtype="str"),
        SOURCE_LINE: pd.Series(parsed.lines, dtype="int64"),
        SOURCE_ISSUE: parsed.issues,
    })
    return frame, info, notes


def read_strava(raw_dir: Path, *, timezone: str = "UTC", cohort: str = "all",
                dayfirst: bool | None = None, date_format: str | None = None
                ) -> tuple[dict[str, pd.DataFrame], dict[str, FileInfo], list[str]]:
    """Read a folder of Strava exports into canonical tables (runs, plus companions).

    Parameters
    ----------
    raw_dir
        Folder with ``<runner>/activities.csv`` files (or one ``activities*.csv``).
    timezone
        IANA zone the runners live in; Strava dates are UTC and are converted to local days.
    cohort
        Cohort of runners derived from folder names when there is no runners file.
    dayfirst, date_format
        How to read numeric dates (:func:`parse_activity_dates`); None: by the header's
        language.

    Raises
    ------
    KneeloadError
        ``timezone`` is not an IANA zone; ambiguous numeric dates (see
        :func:`parse_activity_dates`).
    """
    check_timezone(timezone, file=raw_dir)

    def read_one(path: Path, name: str, runner_id: str
                 ) -> tuple[pd.DataFrame, FileInfo, list[str]]:
        return read_activities(path, name=name, runner_id=runner_id, timezone=timezone,
                               dayfirst=dayfirst, date_format=date_format)

    tables, infos, notes = read_export_folder(
        raw_dir, patterns=EXPORT_PATTERNS, export_name="Strava activities.csv",
        read_one=read_one, cohort=cohort)
    return tables, infos, [f"Strava dates are UTC, converted to {timezone} days", *notes]
