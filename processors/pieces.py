"""The job in pieces: playable soon, complete later, resumable after a crash.

For a video, in this order:
1. the smallest rung, at the quickest preset, and the poster; published with a
   master playlist that lists that rung alone: the upload is `playable`
   (`media.playable`), and the transcript starts beside the encoder;
2. the storyboard (from that rung), published as soon as it exists;
3. the other rungs, smallest to largest, each published and added to the master
   when it is finished (the master is replaced whole: always valid);
4. the MP4 download (the top rung remuxed);
5. the captions, when the transcript is done, joining the master;
then `ready` (`media.ready`), once.

Audio is one piece (the m4a and an audio HLS), then the captions.

Where each part lives: the pieces the encoder makes, and why the ladder is two
runs, in `processors.encoder_pieces`; the transcript's thread and captions in
`processors.transcript_piece`; publishing in `processors.piece_publishing`;
checkpoints (a redo skips what is made and published) in `processors.job_parts`;
the prior costs that start the ETA in `processors.piece_costs`.
"""

from __future__ import annotations

from upload_service.core.status import Record

from .encoder_pieces import audio_piece, first_rung, larger_rungs, mp4_piece, storyboard_piece
from .job_parts import JobParts
from .outputs import build_outputs
from .piece_costs import plan_pieces
from .progress import SPEECH
from .transcode import AUDIO_BITRATE, Deadline, Rendition, choose_ladder
from .transcript_piece import TranscriptThread, publish_captions


def run_pieces(job: JobParts) -> Record:
    """Make, publish and announce every piece; the final `ready` record."""
    job.out.mkdir(parents=True, exist_ok=True)
    media = job.media
    ladder = (
        [Rendition(0, 0, 0, AUDIO_BITRATE)]
        if media.kind == "audio"
        else choose_ladder(media.width or 0, media.height or 0, media.has_audio)
    )
    speech = job.transcribe is not None
    job.status.plan(plan_pieces(media, ladder, speech))
    for name in list(job.status.pieces):
        if job.checkpoint.done(name):
            job.status.skip(name)
    deadline = Deadline(job.timeout)
    if media.kind == "audio":
        audio_piece(job, deadline)
    else:
        first_rung(job, ladder, deadline)
    transcript = TranscriptThread(job) if speech else None
    try:
        if media.kind != "audio":
            storyboard_piece(job, ladder, deadline)
            larger_rungs(job, ladder, deadline)
            mp4_piece(job, deadline)
        if transcript is not None and transcript.running:
            job.status.set_stage("transcribe")
        captions = transcript.result() if transcript is not None else None
    except BaseException:
        if transcript is not None:
            transcript.stop()
        raise
    job.status.finish_lane(SPEECH)
    if captions is not None:
        publish_captions(job, captions)
    job.made.captions = captions
    return job.status.write(
        state="ready",
        progress={"stage": "publish", "percent": 100.0, "eta_s": 0},
        media=media.public(),
        outputs=build_outputs(job.made, job.original_url),
        error=None,
    )
