"""Generations: one row per piece of work a user starts, from upload to result."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from credit_app.generation.features import FEATURE_KEYS
from credit_app.models.base import in_list, insert_timestamp
from credit_app.platform.extensions import Model


class GenerationStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


FINISHED = (GenerationStatus.SUCCEEDED, GenerationStatus.FAILED)


class Generation(Model):
    __tablename__ = "generations"
    __table_args__ = (
        Index("uq_generations_user_generation_id", "user_id", "generation_id", unique=True),
        Index("ix_generations_user_id_id", "user_id", "id"),
        Index("ix_generations_status_created_at", "status", "created_at"),
        Index("ix_generations_user_id_created_at", "user_id", "created_at"),
        CheckConstraint(in_list("status", tuple(GenerationStatus)), name="status_allowed"),
        CheckConstraint(in_list("feature", FEATURE_KEYS), name="feature_allowed"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    generation_id: Mapped[str] = mapped_column(String(255), nullable=False)
    reservation_id: Mapped[int | None] = mapped_column(
        ForeignKey("credit_reservations.id", ondelete="SET NULL")
    )
    feature: Mapped[str] = mapped_column(String(20), nullable=False)
    status: Mapped[str] = mapped_column(
        String(10),
        nullable=False,
        default=GenerationStatus.QUEUED,
        server_default=GenerationStatus.QUEUED.value,
    )
    options: Mapped[dict] = mapped_column(JSONB, nullable=False, default=dict, server_default="{}")
    provider: Mapped[str | None] = mapped_column(String(20))
    # Where the file is (credit_app/platform/storage.py `locator`): its absolute path with the
    # filesystem backend, its key (`12/345/input.png`) in an S3 bucket.
    input_path: Mapped[str] = mapped_column(String(500), nullable=False)
    output_path: Mapped[str | None] = mapped_column(String(500))
    output_media_type: Mapped[str | None] = mapped_column(String(50))
    # The widths of the WebP copies made of each image (credit_app/generation/images.py), e.g.
    # {"input": [320, 640], "output": [320, 640, 1280]}; empty until they are made.
    image_variants: Mapped[dict] = mapped_column(
        JSONB, nullable=False, default=dict, server_default="{}"
    )
    error_message: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    # The rq queue it runs from (jobs/registry.py): "generations_fair_use" for a Pro user past
    # the day's fair-use mark, so recovery queues it again on the same one.
    queue: Mapped[str] = mapped_column(
        String(40), nullable=False, default="generations", server_default="generations"
    )
    # The rq job that claimed it: a retry of that job (same id) may claim it again.
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = insert_timestamp()
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED

    def variant_widths(self, which: str) -> list[int]:
        """The widths of the WebP copies of the "input" or "output" image (none yet: [])."""
        return list((self.image_variants or {}).get(which) or [])

    @property
    def output_is_still(self) -> bool:
        """Whether the result is one still image (a video result is an animation)."""
        return self.feature != "video"

    @property
    def is_fair_use(self) -> bool:
        """Whether it runs on the lower-priority queue of fair use."""
        return self.queue == "generations_fair_use"

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None
