"""`borderline queue list|show|retry|bounce`: the regions' delivery queues.

These read and mark the queue in the region's store, which `borderline serve` may hold
open at the same time: a running server takes a retry or a bounce on its worker's next
pass (within a second); a stopped one when it starts.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from borderline.cli.common import (
    DEFAULT_CONFIG,
    ConfigOption,
    JsonOption,
    console,
    data_table,
    emphasis,
    fail,
    open_cloud,
    print_json,
)
from borderline.cloud import Region
from borderline.queues import OperatorQueue, operator_queues
from borderline.store import QueueEntry

app = typer.Typer(help="Delivery queues: what waits, since when, why; retry or bounce it.")

ItemArgument = Annotated[int, typer.Argument(help="The item's id in its queue (see list).")]
RegionOption = Annotated[str, typer.Option("--region", "-r", help="Region id.")]
QueueOption = Annotated[str, typer.Option("--queue", "-q", help="Queue name.")]
DEFAULT_REASON = "the mail host's operator gave up delivering it"
REASON_MAX = 200  # one line of the DSN
SHOWN = (
    *("region", "queue", "id", "destination", "mail_from", "rcpts", "size", "age"),
    *("attempts", "due_in", "last_error", "bounce"),
)


def duration(seconds: float) -> str:
    """A short, rounded-down age: 42s, 3m05s, 2h07m, 3d04h."""
    whole = max(int(seconds), 0)
    for unit, size, sub, sub_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60)):
        if whole >= size:
            return f"{whole // size}{unit}{whole % size // sub_size:02d}{sub}"
    return f"{whole // 60}m{whole % 60:02d}s" if whole >= 60 else f"{whole}s"


def _queue(region: Region, name: str) -> OperatorQueue:
    queues = operator_queues(region.store)
    if name not in queues:
        raise fail(f"no queue {name!r}; the queues are {', '.join(queues)}")
    return queues[name]


@contextmanager
def _opened(config: Path, region: str, queue: str) -> Iterator[OperatorQueue]:
    """One region's queue, for as long as one command needs it."""
    with open_cloud(config, region) as cloud:
        yield _queue(cloud.region(region), queue)


def _no_item(item_id: int, queue: str, region: str) -> typer.Exit:
    return fail(f"no item {item_id} in the {queue} queue of {region}")


def _as_data(region: str, entry: QueueEntry, now: float) -> dict[str, Any]:
    return {
        "region": region,
        **dataclasses.asdict(entry),
        "age_seconds": round(now - entry.created, 3),
        "due_in_seconds": round(max(entry.next_attempt - now, 0.0), 3),
    }


@app.command("list")
def list_items(
    region: Annotated[str | None, typer.Option("--region", "-r", help="Only this region.")] = None,
    queue: Annotated[str | None, typer.Option("--queue", "-q", help="Only this queue.")] = None,
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: JsonOption = False,
) -> None:
    """Every item waiting in every queue of every region (or those chosen), oldest first:
    its age, attempts, next try and last error. The table names no one; `show` and
    --json give the addresses."""
    now = time.time()
    rows: list[dict[str, Any]] = []
    with open_cloud(config, region) as cloud:
        for served in cloud.regions.values():
            queues = [_queue(served, queue)] if queue else operator_queues(served.store).values()
            for each in queues:
                rows += [_as_data(served.id, entry, now) for entry in each.entries()]
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print("no mail is queued")
        return
    table = data_table(
        "region", "queue", "id", "to", "rcpts", "size", "age", "attempts", "next try", "last error"
    )
    for row in rows:
        table.add_row(
            row["region"],
            row["queue"],
            str(row["id"]),
            row["destination"],
            str(len(row["rcpts"])),
            str(row["size"]),
            duration(row["age_seconds"]),
            str(row["attempts"]),
            "bounce" if row["bounce"] else duration(row["due_in_seconds"]),
            row["last_error"] or "",
        )
    console.print(table)


@app.command("show")
def show(
    item_id: ItemArgument,
    region: RegionOption,
    queue: QueueOption = "relay",
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: JsonOption = False,
) -> None:
    """One item in full, with its sender and recipients (personal data: handle with care)."""
    with _opened(config, region, queue) as opened:
        found = opened.entry(item_id)
    if found is None:
        raise _no_item(item_id, queue, region)
    data = _as_data(region, found, time.time())
    if as_json:
        print_json(data)
        return
    data["age"], data["due_in"] = duration(data["age_seconds"]), duration(data["due_in_seconds"])
    data["rcpts"] = ", ".join(data["rcpts"])
    for key in SHOWN:
        console.print(emphasis(f"{key}: ", str(data[key])))


@app.command("retry")
def retry(
    item_id: ItemArgument,
    region: RegionOption,
    queue: QueueOption = "relay",
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Try the item again now, whatever its backoff said."""
    with _opened(config, region, queue) as opened:
        if not opened.retry(item_id, time.time()):
            raise _no_item(item_id, queue, region)
    console.print(f"{queue} {item_id} in {region}: due now, tried on the worker's next pass")


@app.command("bounce")
def bounce(
    item_id: ItemArgument,
    region: RegionOption,
    reason: Annotated[
        str, typer.Option(help="Why, for the sender's failure report (DSN).")
    ] = DEFAULT_REASON,
    queue: QueueOption = "relay",
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Give up on the item: its sender gets a failure report (DSN) with REASON for every
    recipient not yet delivered, and the item leaves the queue."""
    if not (reason.isascii() and reason.isprintable() and 0 < len(reason) <= REASON_MAX):
        raise fail(f"the reason must be one line of at most {REASON_MAX} ASCII characters")
    with _opened(config, region, queue) as opened:
        if not opened.bounce(item_id, reason, time.time()):
            raise _no_item(item_id, queue, region)
    console.print(f"{queue} {item_id} in {region}: bounced on the worker's next pass")
