"""Listing captions in an HLS master playlist as a subtitles rendition.

Adds `hls/subs_<lang>.m3u8` (one WebVTT segment spanning the media) and
`hls/subs_<lang>.vtt`, an `#EXT-X-MEDIA:TYPE=SUBTITLES` line in the master and
`SUBTITLES="subs"` on every variant. Running it again for the same language
replaces that language's rendition instead of adding a second one.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

from processors.captions import Cue, to_vtt
from processors.ts_timestamps import first_pts

GROUP = "subs"
_NAMES = {
    "en": "English", "de": "Deutsch", "fr": "Français", "es": "Español", "it": "Italiano",
    "pt": "Português", "nl": "Nederlands", "pl": "Polski", "ru": "Русский", "uk": "Українська",
    "tr": "Türkçe", "ar": "العربية", "hi": "हिन्दी", "ja": "日本語", "ko": "한국어", "zh": "中文",
}  # fmt: skip
_SUBTITLES_ATTR = re.compile(r'(?<![A-Z-])SUBTITLES="[^"]*"')


def add_subtitles(hls_dir: Path, lang: str, cues: list[Cue], duration: float) -> list[str]:
    """Write the rendition and list it in `hls_dir/master.m3u8`; names written, under hls_dir."""
    return add_subtitles_vtt(hls_dir, lang, to_vtt(cues), duration)


def add_subtitles_vtt(hls_dir: Path, lang: str, vtt: str, duration: float) -> list[str]:
    """`add_subtitles` for captions already written as WebVTT text."""
    master = hls_dir / "master.m3u8"
    text = master.read_text()
    vtt_name, playlist_name = f"subs_{lang}.vtt", f"subs_{lang}.m3u8"
    # Players line WebVTT cues up with MPEG-TS segments through X-TIMESTAMP-MAP;
    # ffmpeg's HLS muxer starts TS timestamps near 1.4 s, not 0: the first segment says.
    offset = _first_segment_pts(hls_dir, text)
    header = f"X-TIMESTAMP-MAP=MPEGTS:{offset},LOCAL:00:00:00.000" if offset is not None else ""
    _write(hls_dir / vtt_name, _with_header(vtt, header))
    _write(
        hls_dir / playlist_name,
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-PLAYLIST-TYPE:VOD\n"
        f"#EXT-X-TARGETDURATION:{max(1, math.ceil(duration))}\n#EXT-X-MEDIA-SEQUENCE:0\n"
        f"#EXTINF:{duration:.3f},\n{vtt_name}\n#EXT-X-ENDLIST\n",
    )
    _write(master, with_subtitles(text, lang, playlist_name))
    return [vtt_name, playlist_name, "master.m3u8"]


def _with_header(vtt: str, header: str) -> str:
    """`header` right after the WEBVTT signature line, where to_vtt puts it."""
    if not header:
        return vtt
    signature, _, rest = vtt.partition("\n")
    return f"{signature}\n{header}\n{rest}"


def with_subtitles(master: str, lang: str, uri: str) -> str:
    """`master` with a subtitles rendition for `lang` that every variant refers to."""
    name = _NAMES.get(lang, lang)
    media = (
        f'#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="{GROUP}",NAME="{name}",LANGUAGE="{lang}",'
        f'DEFAULT=NO,AUTOSELECT=YES,FORCED=NO,URI="{uri}"'
    )
    lines = [
        line
        for line in master.splitlines()
        if not (
            line.startswith("#EXT-X-MEDIA:")
            and "TYPE=SUBTITLES" in line
            and f'GROUP-ID="{GROUP}"' in line
            and f'LANGUAGE="{lang}"' in line
        )
    ]
    out: list[str] = []
    inserted = False
    for line in lines:
        if line.startswith("#EXT-X-STREAM-INF:"):
            if not inserted:
                out.append(media)
                inserted = True
            if _SUBTITLES_ATTR.search(line):
                line = _SUBTITLES_ATTR.sub(f'SUBTITLES="{GROUP}"', line)
            else:
                line += f',SUBTITLES="{GROUP}"'
        out.append(line)
    if not inserted:
        out.append(media)
    return "\n".join(out) + "\n"


def _first_segment_pts(hls_dir: Path, master: str) -> int | None:
    """The first media segment's start in 90 kHz ticks, or None when unknown."""
    variant = _first_uri(master)
    if variant is None or "://" in variant:
        return None
    playlist = hls_dir / variant
    try:
        segment = _first_uri(playlist.read_text())
    except OSError:
        return None
    if segment is None or "://" in segment:
        return None
    return first_pts(playlist.parent / segment)


def _first_uri(playlist: str) -> str | None:
    for line in playlist.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            return line
    return None


def _write(path: Path, text: str) -> None:
    # Written beside and renamed: a player never reads half a playlist.
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
