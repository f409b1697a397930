"""Listener base ports (cli/demo.free_base_port): below the ephemeral range, every
listener inside its slot, and processes of different lanes never on the same ports."""

from __future__ import annotations

from borderline.cli.demo import (
    BROWSER_REFUSED_PORTS,
    EPHEMERAL_PORTS,
    LISTENER_OFFSETS,
    SLOT,
    base_slots,
    free_base_port,
)


def test_lanes_never_share_a_slot_and_every_listener_stays_below_the_ephemeral_range() -> None:
    lanes = {lane: {free_base_port(lane, 3) // SLOT for _ in range(60)} for lane in range(3)}
    assert not lanes[0] & lanes[1] and not lanes[1] & lanes[2] and not lanes[0] & lanes[2]
    for slots in lanes.values():
        assert all(slot * SLOT + max(LISTENER_OFFSETS) < EPHEMERAL_PORTS for slot in slots)
    assert max(LISTENER_OFFSETS) < SLOT


def test_no_listener_is_on_a_port_browsers_refuse() -> None:
    """Base 10000 put the console on 10080, which Chromium refuses (ERR_UNSAFE_PORT): the
    browser test failed whenever a worker drew that slot. No lane draws it now."""
    for lanes in (1, 2, 3):
        for lane in range(lanes):
            slots = base_slots(lane, lanes)
            assert slots and 10000 // SLOT not in slots
            ports = {slot * SLOT + offset for slot in slots for offset in LISTENER_OFFSETS}
            assert not ports & BROWSER_REFUSED_PORTS
