"""Parsers for watch activity files: FIT (Garmin FIT SDK), GPX and TCX (lxml).

One job: bytes of one file -> :class:`Session` objects, or an :class:`ActivityFileError`
naming what is wrong. Folder walking, caching and parallelism live in
:mod:`analysis.ingest.activity`.

Definitions used by every format (times in seconds, distances in metres until the end):

* ``start_time``: the session's start, a tz-aware UTC :class:`pandas.Timestamp` (FIT, GPX
  and TCX all store UTC).
* ``elapsed_s``: wall-clock time from start to the last sample.
* ``moving_s``: the device's timer when the file has one (FIT session ``total_moving_time``,
  else ``total_timer_time``; TCX lap ``TotalTimeSeconds`` summed), which excludes paused
  time; otherwise (GPX, or a FIT/TCX without summaries) the sum of the intervals between
  consecutive samples whose mean speed is at least :data:`MOVING_SPEED_MPS`.
* ``distance_km``: FIT session ``total_distance`` / TCX lap ``DistanceMeters`` when present,
  else the largest record distance, else the great-circle length of the track on a sphere of
  radius :data:`EARTH_RADIUS_M` (haversine).
* ``elevation_gain_m``: FIT session ``total_ascent`` when present, else the sum of the
  positive altitude increments between consecutive samples (unsmoothed, so GPS altitude
  noise inflates it), NaN when the file has no altitude.
* heart rate: every sample with a heart rate above 0 bpm, as seconds since ``start_time``.
"""

from __future__ import annotations

import gzip
import math
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from analysis.errors import InputFileError
from analysis.filenames import split_suffix

#: Mean Earth radius (IUGG R1 = 6,371,008.8 m; Moritz 2000, Geodetic Reference System 1980,
#: J. Geodesy 74:128-133) for the haversine length of a GPS track.
EARTH_RADIUS_M = 6_371_008.8

#: An interval between two track points counts as moving when its mean speed is at least this
#: (m/s). 1 km/h, the stop threshold of gpxpy (``gpxpy.gpx.DEFAULT_STOPPED_SPEED_THRESHOLD``),
#: far below walking (about 1.4 m/s): only standing still or a paused watch falls under it.
MOVING_SPEED_MPS = 1.0 / 3.6

#: Seconds between the Unix epoch and the FIT epoch, 1989-12-31T00:00:00Z (FIT SDK profile,
#: ``date_time`` type).
FIT_EPOCH_UNIX_S = 631_065_600

#: Bytes 8-11 of every FIT file header (FIT protocol, file header ``data_type``).
FIT_SIGNATURE = b".FIT"
#: The two first bytes of a gzip member (RFC 1952, ID1 ID2).
GZIP_MAGIC = b"\x1f\x8b"



class ActivityFileError(InputFileError):
    """An activity file is empty, truncated, corrupt or not an activity (quarantined)."""


@dataclass(frozen=True)
class Session:
    """One recorded session of one activity file.

    Attributes
    ----------
    start_time
        Session start, tz-aware UTC.
    distance_km, moving_s, elapsed_s
        Distance (km), moving and elapsed time (s); see the module docstring for the rules.
    elevation_gain_m
        Total ascent (m), NaN when the file has no altitude.
    sport
        Lower-case sport as the file names it (``"running"``, ``"cycling"``...), or None.
    hr_elapsed_s, hr_bpm
        Heart-rate samples: seconds since ``start_time`` and beats per minute (float64, same
        length; empty when the file has no heart rate).
    file_format
        ``"fit"``, ``"gpx"`` or ``"tcx"``.
    utc_offset_s
        The device's local-time offset from UTC (s) when the file records one (FIT
        ``activity.local_timestamp``), else None.
    """

    start_time: pd.Timestamp
    distance_km: float
    moving_s: float
    elapsed_s: float
    elevation_gain_m: float
    sport: str | None
    file_format: str
    hr_elapsed_s: np.ndarray = field(repr=False)
    hr_bpm: np.ndarray = field(repr=False)
    utc_offset_s: float | None = None

    @property
    def n_hr_samples(self) -> int:
        """Number of heart-rate samples."""
        return int(self.hr_bpm.size)


def _bad(reason: str) -> ActivityFileError:
    return ActivityFileError(reason)


# --- detection and decompression -----------------------------------------------------------


def sniff_format(data: bytes) -> str | None:
    """The format of decompressed bytes from their content: ``".FIT"`` at byte 8, or an XML
    document whose root element is ``gpx`` or ``TrainingCenterDatabase``."""
    if len(data) >= 12 and data[8:12] == FIT_SIGNATURE:
        return "fit"
    head = data[:2048].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"<"):
        if b"<gpx" in head or b":gpx" in head:
            return "gpx"
        if b"TrainingCenterDatabase" in head:
            return "tcx"
    return None


def decode_bytes(raw: bytes, *, name: str) -> tuple[str, bytes]:
    """(format, plain bytes) of a file's raw bytes, gunzipped when needed.

    Raises
    ------
    ActivityFileError
        Empty file, a ``.gz`` that is not gzip, a truncated gzip, or content that is none of
        FIT, GPX, TCX.
    """
    suffix_fmt, suffix_gz = split_suffix(name)
    if not raw:
        raise _bad("empty file (0 bytes)")
    if raw[:2] == GZIP_MAGIC:
        try:
            data = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise _bad(f"gzip data is truncated or corrupt ({exc})") from None
        if not data:
            raise _bad("empty file (0 bytes after gunzip)")
    elif suffix_gz:
        raise _bad("named .gz but is not gzip data (no 1f 8b magic bytes)")
    else:
        data = raw
    fmt = sniff_format(data)
    if fmt is None:
        expected = suffix_fmt.upper() if suffix_fmt else "FIT, GPX or TCX"
        if suffix_fmt == "fit":
            raise _bad("not a FIT file (no '.FIT' signature at byte 8)")
        raise _bad(f"not a {expected} file (content is not recognised)")
    return fmt, data


def parse_activity_bytes(raw: bytes, *, name: str) -> list[Session]:
    """Every session of one activity file given as its raw (possibly gzipped) bytes.

    Parameters
    ----------
    raw
        The file's bytes.
    name
        The file name (its suffix tells ``.gz`` and the expected format).

    Raises
    ------
    ActivityFileError
        With the reason the file cannot be read (see :func:`decode_bytes`, plus decoder
        errors, files with no timed samples and files with no session).
    """
    fmt, data = decode_bytes(raw, name=name)
    if fmt == "fit":
        return parse_fit(data)
    return [parse_gpx(data) if fmt == "gpx" else parse_tcx(data)]


# --- helpers shared by the formats ----------------------------------------------------------

def haversine_m(lat_deg: np.ndarray, lon_deg: np.ndarray) -> np.ndarray:
    """Great-circle distance (m) between consecutive points on a sphere of
    :data:`EARTH_RADIUS_M` (haversine formula); length ``len(lat) - 1``."""
    lat = np.radians(lat_deg)
    lon = np.radians(lon_deg)
    dlat = np.diff(lat)
    dlon = np.diff(lon)
    a = np.sin(dlat / 2) ** 2 + np.cos(lat[:-1]) * np.cos(lat[1:]) * np.sin(dlon / 2) ** 2
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def moving_seconds(t_s: np.ndarray, step_m: np.ndarray) -> float:
    """Sum of the intervals whose mean speed is at least :data:`MOVING_SPEED_MPS` (s).

    Parameters
    ----------
    t_s
        Sample times (s), non-decreasing, length n.
    step_m
        Distance covered in each of the n - 1 intervals (m); NaN intervals do not count.
    """
    dt = np.diff(t_s)
    with np.errstate(divide="ignore", invalid="ignore"):
        speed = np.where(dt > 0, step_m / dt, 0.0)
    return float(dt[np.nan_to_num(speed, nan=0.0) >= MOVING_SPEED_MPS].sum())


def positive_gain_m(alt_m: np.ndarray) -> float:
    """Sum of positive increments of an altitude series (m), NaN samples skipped; NaN when
    fewer than two altitudes."""
    alt = alt_m[np.isfinite(alt_m)]
    if alt.size < 2:
        return math.nan
    steps = np.diff(alt)
    return float(steps[steps > 0].sum())


def _hr_arrays(t_s: np.ndarray, hr: np.ndarray, start_s: float) -> tuple[np.ndarray, np.ndarray]:
    keep = np.isfinite(hr) & (hr > 0) & np.isfinite(t_s)
    return (t_s[keep] - start_s).astype(np.float64), hr[keep].astype(np.float64)


def _utc(seconds_unix: float) -> pd.Timestamp:
    return pd.Timestamp(round(seconds_unix * 1e9), unit="ns", tz="UTC")


# --- FIT ------------------------------------------------------------------------------------

def _fit_messages(data: bytes) -> dict[str, list[dict[str, Any]]]:
    from garmin_fit_sdk import Decoder, Stream

    decoder = Decoder(Stream.from_byte_array(bytearray(data)))
    if not decoder.is_fit():
        raise _bad("not a FIT file (bad header or shorter than a header)")
    try:
        messages, errors = decoder.read(convert_datetimes_to_dates=False)
    except Exception as exc:  # the SDK's own bug on odd bytes: still this file's problem
        raise _bad(f"FIT decoder failed: {exc!r}") from None
    if errors:
        text = "; ".join(str(e) or type(e).__name__ for e in errors)
        raise _bad(f"FIT file truncated or corrupt (decoder: {text})")
    return messages


def _record_columns(records: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    def col(*keys: str) -> np.ndarray:
        out = np.full(len(records), np.nan)
        for i, rec in enumerate(records):
            for key in keys:
                value = rec.get(key)
                if value is not None:
                    out[i] = value
                    break
        return out

    return {"t": col("timestamp"), "hr": col("heart_rate"), "dist": col("distance"),
            "alt": col("enhanced_altitude", "altitude")}


def _fit_sport(value: Any) -> str | None:
    if value is None:
        return None
    return str(value).lower()


def parse_fit(data: bytes) -> list[Session]:
    """Sessions of a FIT activity file (plain bytes), decoded with the Garmin FIT SDK.

    One :class:`Session` per ``session`` message; its heart-rate samples are the records
    between its start and its end. A file with records but no session message (a watch that
    stopped before writing its summary) gives one session computed from the records.
    """
    messages = _fit_messages(data)
    records = messages.get("record_mesgs", [])
    cols = _record_columns(records)
    order = np.argsort(cols["t"], kind="stable")
    cols = {k: v[order] for k, v in cols.items()}
    t_unix = cols["t"] + FIT_EPOCH_UNIX_S
    activity = (messages.get("activity_mesgs") or [{}])[0]
    offset = None
    if activity.get("local_timestamp") is not None and activity.get("timestamp") is not None:
        offset = float(activity["local_timestamp"] - activity["timestamp"])
    summaries = messages.get("session_mesgs", [])
    if not summaries:
        sport = _fit_sport((messages.get("sport_mesgs") or [{}])[0].get("sport"))
        return [_fit_from_records(cols, t_unix, sport=sport, offset=offset)]
    sessions = []
    for ses in summaries:
        start_fit = ses.get("start_time")
        if start_fit is None:
            raise _bad("FIT session message has no start_time")
        start = float(start_fit) + FIT_EPOCH_UNIX_S
        elapsed = ses.get("total_elapsed_time")
        end = start + elapsed if elapsed is not None else math.inf
        inside = (t_unix >= start) & (t_unix <= end)
        part = {k: v[inside] for k, v in cols.items()}
        t_part = t_unix[inside]
        if elapsed is None:
            elapsed = float(t_part[-1] - start) if t_part.size else math.nan
        moving = ses.get("total_moving_time", ses.get("total_timer_time"))
        distance = ses.get("total_distance")
        if distance is None:
            distance = float(np.nanmax(part["dist"])) if np.isfinite(part["dist"]).any() \
                else math.nan
        if moving is None:
            moving = moving_seconds(t_part, np.diff(part["dist"]))
        gain = ses.get("total_ascent")
        hr_t, hr = _hr_arrays(t_part, part["hr"], start)
        sessions.append(Session(
            start_time=_utc(start), distance_km=float(distance) / 1000.0,
            moving_s=float(moving), elapsed_s=float(elapsed),
            elevation_gain_m=positive_gain_m(part["alt"]) if gain is None else float(gain),
            sport=_fit_sport(ses.get("sport")), file_format="fit",
            hr_elapsed_s=hr_t, hr_bpm=hr, utc_offset_s=offset))
    return sessions


def _fit_from_records(cols: dict[str, np.ndarray], t_unix: np.ndarray, *, sport: str | None,
                      offset: float | None) -> Session:
    ok = np.isfinite(t_unix)
    if not ok.any():
        raise _bad("FIT file has neither a session message nor timed records")
    t = t_unix[ok]
    dist = cols["dist"][ok]
    start = float(t[0])
    distance = float(np.nanmax(dist)) if np.isfinite(dist).any() else math.nan
    hr_t, hr = _hr_arrays(t, cols["hr"][ok], start)
    return Session(
        start_time=_utc(start), distance_km=distance / 1000.0,
        moving_s=moving_seconds(t, np.diff(dist)), elapsed_s=float(t[-1] - start),
        elevation_gain_m=positive_gain_m(cols["alt"][ok]), sport=sport, file_format="fit",
        hr_elapsed_s=hr_t, hr_bpm=hr, utc_offset_s=offset)


# --- GPX and TCX (XML) ------------------------------------------------------------------------

def _xml_root(data: bytes, *, kind: str) -> Any:
    from lxml import etree

    # No entity expansion or network access: activity files come from outside.
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True,
                             remove_comments=True)
    try:
        return etree.fromstring(data, parser=parser)
    except etree.XMLSyntaxError as exc:
        raise _bad(f"{kind} file truncated or not well-formed XML ({exc})") from None


def _seconds(texts: list[str | None]) -> np.ndarray:
    """Unix seconds of ISO 8601 texts (UTC; a time without offset is read as UTC, as the GPX
    and TCX schemas define); NaN where missing or unreadable."""
    stamps = pd.to_datetime(pd.Series(texts, dtype="str"), utc=True, format="ISO8601",
                            errors="coerce")
    return (stamps - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(dtype=np.float64,
                                                                          na_value=np.nan)


def _num(text: str | None) -> float:
    if text is None:
        return math.nan
    try:
        return float(text)
    except ValueError:
        return math.nan


def _track_session(*, t: np.ndarray, lat: np.ndarray, lon: np.ndarray, alt: np.ndarray,
                   hr: np.ndarray, dist: np.ndarray | None, kind: str, sport: str | None,
                   start_s: float | None = None, moving_s: float | None = None,
                   distance_m: float | None = None) -> Session:
    ok = np.isfinite(t)
    if not ok.any():
        raise _bad(f"{kind} file has no timed track points (a route, or empty)")
    order = np.argsort(t[ok], kind="stable")

    def pick(a: np.ndarray) -> np.ndarray:
        return a[ok][order]

    t, lat, lon, alt, hr = pick(t), pick(lat), pick(lon), pick(alt), pick(hr)
    if dist is not None and np.isfinite(dist).any():
        d = pick(dist)
        step = np.diff(d)
        track_m = float(np.nanmax(d))
    else:
        step = haversine_m(lat, lon)
        track_m = float(np.nansum(step)) if np.isfinite(step).any() else math.nan
    start = float(t[0]) if start_s is None or not math.isfinite(start_s) else start_s
    hr_t, hr_v = _hr_arrays(t, hr, start)
    return Session(
        start_time=_utc(start),
        distance_km=(track_m if distance_m is None else distance_m) / 1000.0,
        moving_s=moving_seconds(t, step) if moving_s is None else moving_s,
        elapsed_s=float(t[-1] - start), elevation_gain_m=positive_gain_m(alt),
        sport=sport, file_format=kind.lower(), hr_elapsed_s=hr_t, hr_bpm=hr_v)


def parse_gpx(data: bytes) -> Session:
    """One session from a GPX 1.0/1.1 file: every ``trkpt`` of every track and segment in
    document order; heart rate from any extension element named ``hr`` (Garmin
    TrackPointExtension v1/v2); sport from the first ``trk/type``."""
    root = _xml_root(data, kind="GPX")
    points = list(root.iter("{*}trkpt"))
    times, lat, lon, alt, hr = [], [], [], [], []
    for pt in points:
        times.append(pt.findtext("{*}time"))
        lat.append(_num(pt.get("lat")))
        lon.append(_num(pt.get("lon")))
        alt.append(_num(pt.findtext("{*}ele")))
        hr.append(_num(pt.findtext("{*}extensions//{*}hr")))
    sport = root.findtext("{*}trk/{*}type")
    return _track_session(
        t=_seconds(times), lat=np.array(lat), lon=np.array(lon), alt=np.array(alt),
        hr=np.array(hr), dist=None, kind="GPX",
        sport=sport.strip().lower() if sport and sport.strip() else None)


def parse_tcx(data: bytes) -> Session:
    """One session from a TCX (Training Center Database v2) file: the first ``Activity``;
    distance and timer time are its laps' ``DistanceMeters`` and ``TotalTimeSeconds`` summed,
    the samples are its ``Trackpoint`` elements."""
    root = _xml_root(data, kind="TCX")
    activity = next(root.iter("{*}Activity"), None)
    if activity is None:
        raise _bad("TCX file has no Activity element")
    laps = list(activity.iter("{*}Lap"))
    lap_time = [_num(lap.findtext("{*}TotalTimeSeconds")) for lap in laps]
    lap_dist = [_num(lap.findtext("{*}DistanceMeters")) for lap in laps]
    starts = _seconds([lap.get("StartTime") for lap in laps]) if laps else np.array([])
    times, lat, lon, alt, hr, dist = [], [], [], [], [], []
    for tp in activity.iter("{*}Trackpoint"):
        times.append(tp.findtext("{*}Time"))
        lat.append(_num(tp.findtext("{*}Position/{*}LatitudeDegrees")))
        lon.append(_num(tp.findtext("{*}Position/{*}LongitudeDegrees")))
        alt.append(_num(tp.findtext("{*}AltitudeMeters")))
        dist.append(_num(tp.findtext("{*}DistanceMeters")))
        hr.append(_num(tp.findtext("{*}HeartRateBpm/{*}Value")))
    sport = activity.get("Sport")
    all_laps = bool(laps) and all(math.isfinite(v) for v in lap_time)
    all_dist = bool(laps) and all(math.isfinite(v) for v in lap_dist)
    return _track_session(
        t=_seconds(times), lat=np.array(lat), lon=np.array(lon), alt=np.array(alt),
        hr=np.array(hr), dist=np.array(dist), kind="TCX",
        sport=sport.strip().lower() if sport and sport.strip() else None,
        start_s=float(np.nanmin(starts)) if np.isfinite(starts).any() else None,
        moving_s=float(sum(lap_time)) if all_laps else None,
        distance_m=float(sum(lap_dist)) if all_dist else None)
