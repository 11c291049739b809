"""A B2 account on b2sdk's RawSimulator (the one stand-in for B2 the tests allow)."""

from __future__ import annotations

from dataclasses import dataclass, field

from b2sdk.v2 import B2Api, B2HttpApiConfig, Bucket, InMemoryAccountInfo, RawSimulator

from processors.b2 import B2Publisher

MB = 1024 * 1024
PART = 5 * MB  # B2's smallest part; the simulator would accept 200 bytes


@dataclass
class FakeB2:
    """A B2 account on the simulator: an authorized API and one bucket."""

    api: B2Api
    sim: RawSimulator
    bucket: Bucket
    sleeps: list[float] = field(default_factory=list)

    def publisher(self, **options: object) -> B2Publisher:
        kwargs: dict[str, object] = dict(
            api_factory=lambda: self.api,
            bucket_name=self.bucket.name,
            part_size=PART,
            threads=2,
            backoff=0.5,
            sleep=self.sleeps.append,  # record the backoff instead of waiting
        )
        kwargs.update(options)
        return B2Publisher(**kwargs)  # type: ignore[arg-type]

    def versions(self, prefix: str = "") -> dict[str, list[object]]:
        found: dict[str, list[object]] = {}
        for version, _ in self.bucket.ls(prefix, latest_only=False, recursive=True):
            if version.action != "start":  # an unfinished large file
                found.setdefault(version.file_name, []).append(version)
        return found

    def unfinished(self) -> list[object]:
        return list(self.bucket.list_unfinished_large_files())


def make_fake_b2() -> FakeB2:
    api = B2Api(
        InMemoryAccountInfo(),
        api_config=B2HttpApiConfig(_raw_api_class=RawSimulator),
        max_upload_workers=4,
    )
    sim = api.session.raw_api
    key_id, key = sim.create_account()
    api.authorize_account("production", key_id, key)
    bucket = api.create_bucket("media-bucket", "allPrivate")
    return FakeB2(api, sim, bucket)
