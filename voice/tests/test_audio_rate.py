"""The browser socket's audio rate guard: a token bucket of bytes on a (here, hand-driven) monotonic clock."""

from __future__ import annotations

from voice.browser_call import AudioRateGuard

FRAME = 1920  # 40 ms of PCM16 24 kHz


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def guard(clock: Clock) -> AudioRateGuard:
    return AudioRateGuard(bytes_per_ms=48, burst_ms=2000, bound_s=3, clock=clock)


def test_a_microphone_at_real_time_with_jitter_loses_nothing():
    clock = Clock()
    rate = guard(clock)
    for i in range(3000):  # two minutes of 40 ms frames, each up to 30 ms early or late
        clock.now = 100.0 + i * 0.040 + (0.030 if i % 2 else -0.030)
        assert rate.admit(FRAME)
    assert rate.dropped_bytes == 0 and not rate.sustained


def test_a_catch_up_burst_after_a_stall_loses_only_what_exceeds_the_burst_and_does_not_end_the_call():
    clock = Clock()
    rate = guard(clock)
    clock.now += 5.0  # the tab stalled for five seconds, then sends the five seconds it had queued
    admitted = sum(rate.admit(FRAME) for _ in range(125))
    assert admitted == 2000 // 40  # the burst allowance; the other three seconds are dropped
    for _ in range(200):  # then real time again
        clock.now += 0.040
        rate.admit(FRAME)
    assert not rate.sustained


def test_audio_at_twice_real_time_is_dropped_and_is_sustained_after_the_bound():
    clock = Clock()
    rate = guard(clock)
    forwarded = 0
    for _ in range(400):  # 20 ms apart: twice real time, for eight seconds
        clock.now += 0.020
        forwarded += rate.admit(FRAME)
        if rate.sustained:
            break
    assert rate.sustained
    seconds = clock.now - 100.0
    assert 3.0 <= seconds <= 6.0  # the burst lasts ~2 s at this rate, then 3 s of excess
    assert forwarded * 40 <= seconds * 1000 + 2000 + 40  # never more than real time plus the burst
