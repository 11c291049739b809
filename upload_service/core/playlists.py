"""Rewriting the URIs of an HLS playlist (or a storyboard's WebVTT) as it is served.

A playlist names other files: on its URI lines (variants, segments) and in
`URI="..."` attributes of its tags (EXT-X-MEDIA subtitles, EXT-X-MAP, keys,
I-frame playlists). Signed media must reach the player with every one of
them carrying a signature, so each is passed through `map_uri`; everything
else, comments and tags without a URI, is left exactly as it was.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import urlsplit

_URI_ATTRIBUTE = re.compile(r'URI="([^"]*)"')


def rewrite_uris(playlist: bytes, map_uri: Callable[[str], str]) -> bytes:
    lines = playlist.decode("utf-8", "surrogateescape").split("\n")
    for i, line in enumerate(lines):
        text = line.rstrip("\r")
        ending = line[len(text) :]
        if text.startswith("#"):
            text = _URI_ATTRIBUTE.sub(lambda m: f'URI="{map_uri(m.group(1))}"', text)
        elif text.strip():
            text = map_uri(text.strip())
        lines[i] = text + ending
    return "\n".join(lines).encode("utf-8", "surrogateescape")


def rewrite_storyboard(vtt: bytes, map_uri: Callable[[str], str]) -> bytes:
    """A storyboard's cues name the sprite sheet (`storyboard.jpg#xywh=0,0,160,90`):
    each cue's payload, the line after its timing line, is passed through `map_uri`
    without its media fragment, which is put back after the new query."""
    lines = vtt.decode("utf-8", "surrogateescape").split("\n")
    for i in range(1, len(lines)):
        text = lines[i].rstrip("\r")
        if "-->" in lines[i - 1] and text.strip() and "-->" not in text:
            uri, hash_, fragment = text.strip().partition("#")
            lines[i] = map_uri(uri) + hash_ + fragment + lines[i][len(text) :]
    return "\n".join(lines).encode("utf-8", "surrogateescape")


def is_relative(uri: str) -> bool:
    """A URI of this server's own files: no scheme, no host (what the transcoder writes)."""
    parts = urlsplit(uri)
    return not parts.scheme and not parts.netloc


def with_query(uri: str, query: str) -> str:
    """`uri` with `query` appended to whatever query it already has."""
    return f"{uri}{'&' if '?' in uri else '?'}{query}"
