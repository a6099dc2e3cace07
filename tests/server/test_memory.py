"""The memory reclaimer collects once a crowd of streams has left, and not before."""

from __future__ import annotations

from server.memory import MIN_PEAK, QUIET_SECONDS, MemoryReclaimer
from server.streaming.frames import FrameCache


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_it_collects_after_a_crowd_has_left_and_things_are_quiet() -> None:
    clock, streams, collections = Clock(), [0], []
    cache = FrameCache(lambda data: b"frame:" + data)
    reclaimer = MemoryReclaimer(
        lambda: streams[0],
        clock=clock,
        collect=lambda: collections.append(clock.now),
        forget=(cache.clear,),
    )
    held = b"an event"
    first = cache.frame(held)
    for count in (10, MIN_PEAK * 4, MIN_PEAK * 3):  # a crowd arrives, some leave
        streams[0] = count
        clock.now += 1
        assert not reclaimer.check()
    streams[0] = MIN_PEAK  # most have left ...
    clock.now += 1
    assert not reclaimer.check()  # ... but the crowd rose only moments ago
    clock.now += QUIET_SECONDS
    assert reclaimer.check()
    assert collections == [clock.now]
    assert cache.frame(held) is not first  # the storm's frames were forgotten, not kept
    clock.now += QUIET_SECONDS
    assert not reclaimer.check()  # once per crowd: the peak is now the current count


def test_a_small_server_is_never_paused() -> None:
    clock, streams = Clock(), [MIN_PEAK - 1]
    reclaimer = MemoryReclaimer(lambda: streams[0], clock=clock, collect=lambda: None)
    assert not reclaimer.check()
    streams[0] = 0
    clock.now += 60
    assert not reclaimer.check()
    assert reclaimer.reclaimed == 0
