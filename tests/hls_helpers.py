"""A small published HLS tree: every kind of URI a playlist can name, in real syntax."""

from __future__ import annotations

MASTER = (
    "#EXTM3U\n"
    "#EXT-X-VERSION:6\n"
    '#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",NAME="en",LANGUAGE="en",URI="subs_en.m3u8"\n'
    '#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360,SUBTITLES="subs"\n'
    "v0/index.m3u8\n"
    '#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=90000,URI="v0/iframes.m3u8"\n'
)
VARIANT = (
    "#EXTM3U\n"
    "#EXT-X-TARGETDURATION:4\n"
    '#EXT-X-MAP:URI="init.mp4"\n'
    "#EXTINF:4.000,\n"
    "seg_00000.ts\n"
    "#EXTINF:2.000,\n"
    "seg_00001.ts\n"
    "#EXT-X-ENDLIST\n"
)
FILES = {
    "hls/master.m3u8": MASTER.encode(),
    "hls/v0/index.m3u8": VARIANT.encode(),
    "hls/v0/iframes.m3u8": b"#EXTM3U\n#EXT-X-BYTERANGE:100@0\nseg_00000.ts\n#EXT-X-ENDLIST\n",
    "hls/v0/init.mp4": b"init-section",
    "hls/v0/seg_00000.ts": b"\x47segment-0",
    "hls/v0/seg_00001.ts": b"\x47segment-1",
    "hls/subs_en.m3u8": b"#EXTM3U\n#EXTINF:6.000,\nsubs_en.vtt\n#EXT-X-ENDLIST\n",
    "hls/subs_en.vtt": b"WEBVTT\n\n00:00.000 --> 00:01.000\nhello\n",
    "poster.jpg": b"\xff\xd8jpeg",
    "video.mp4": b"mp4-bytes",
}
