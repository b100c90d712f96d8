"""Audio helpers the offline tools share: μ-law/A-law conversion, tones, espeak-ng speech, WAV files and
synthetic speech.

The Realtime stand-in speaks in the session's output format (``FORMATS``); the simulated caller speaks 8 kHz
μ-law in 20 ms frames, as Twilio does. ``audioop`` is in the standard library up to Python 3.12; on 3.13 and
later the ``audioop-lts`` package (requirements.txt) provides the same module.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import math
import os
import random
import shutil
import struct
import tempfile
import warnings
from array import array

with warnings.catch_warnings():
    # Deprecated since 3.11 in the standard library (no warning from audioop-lts on 3.13+).
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

log = logging.getLogger("voice.offline.audio")

# Realtime audio formats: type -> (bytes per millisecond, sample rate)
FORMATS = {"audio/pcm": (48, 24000), "audio/pcmu": (8, 8000), "audio/pcma": (8, 8000)}
_TONE_MS_PER_CHAR = 65
_TONE_MIN_MS = 400
_TONE_FREQS = (440, 490, 520, 590)  # each an integer number of periods in 100 ms, so chunks join cleanly
_TONE_AMPLITUDE = 8000

# Twilio Media Streams audio (the simulated caller)
SAMPLE_RATE = 8000
BYTES_PER_MS = 8  # μ-law, 8 kHz, mono: one byte per sample
FRAME_MS = 20
FRAME_BYTES = FRAME_MS * BYTES_PER_MS  # 160
MULAW_SILENCE = 0xFF


# --------------------------------------------------------------------------------------------
# Realtime formats, tone and espeak-ng (the stand-in's voice)
# --------------------------------------------------------------------------------------------

def fmt_type(fmt: dict | None) -> str:
    return (fmt or {}).get("type", "audio/pcm")


def to_lin16(data: bytes, fmt_type: str) -> bytes:
    if fmt_type == "audio/pcmu":
        return audioop.ulaw2lin(data, 2)
    if fmt_type == "audio/pcma":
        return audioop.alaw2lin(data, 2)
    return data if len(data) % 2 == 0 else data[:-1]


def from_lin16(lin: bytes, fmt_type: str) -> bytes:
    if fmt_type == "audio/pcmu":
        return audioop.lin2ulaw(lin, 2)
    if fmt_type == "audio/pcma":
        return audioop.lin2alaw(lin, 2)
    return lin


_tone_cache: dict[tuple[str, int], bytes] = {}


def _tone_chunk(fmt_type: str, index: int) -> bytes:
    """100 ms of tone in ``fmt_type``; the frequency cycles with ``index``."""
    freq = _TONE_FREQS[index % len(_TONE_FREQS)]
    key = (fmt_type, freq)
    chunk = _tone_cache.get(key)
    if chunk is None:
        rate = FORMATS[fmt_type][1]
        n = rate // 10
        samples = array("h", (int(_TONE_AMPLITUDE * math.sin(2 * math.pi * freq * i / rate)) for i in range(n)))
        chunk = _tone_cache[key] = from_lin16(samples.tobytes(), fmt_type)
    return chunk


def tone_audio(text: str, fmt_type: str) -> bytes:
    """A tone whose length follows the text (65 ms per character, at least 400 ms)."""
    ms = max(_TONE_MIN_MS, _TONE_MS_PER_CHAR * len(text))
    bpm = FORMATS[fmt_type][0]
    parts = [_tone_chunk(fmt_type, i) for i in range(ms // 100 + 1)]
    return b"".join(parts)[: ms * bpm]


_espeak_cache: dict[tuple[str, str], bytes] = {}


async def espeak_audio(text: str, fmt_type: str) -> bytes | None:
    """Speak ``text`` with espeak-ng in ``fmt_type``; None if espeak-ng is missing or fails."""
    key = (text, fmt_type)
    if key in _espeak_cache:
        return _espeak_cache[key]
    exe = shutil.which("espeak-ng")
    if exe is None or not text.strip():
        return None
    fd, path = tempfile.mkstemp(suffix=".wav", prefix="standin-")
    os.close(fd)
    proc = None
    try:
        proc = await asyncio.create_subprocess_exec(
            exe, "-v", "en-us", "-s", "165", "-w", path, "--", text,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )
        if await proc.wait() != 0:
            return None
        bpm, target = FORMATS[fmt_type]
        audio = from_lin16(load_wav_pcm16(path, target), fmt_type)
        audio += silence(fmt_type, 1)[: (-len(audio)) % bpm]  # whole milliseconds
        if len(_espeak_cache) > 256:
            _espeak_cache.clear()
        _espeak_cache[key] = audio
        return audio
    except (OSError, ValueError, struct.error, audioop.error) as exc:
        log.warning("espeak-ng failed (%s); using a tone", exc)
        return None
    finally:
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        with contextlib.suppress(OSError):
            os.unlink(path)


def silence(fmt_type: str, ms: int) -> bytes:
    bpm = FORMATS[fmt_type][0]
    if fmt_type == "audio/pcmu":
        return b"\xff" * (bpm * ms)
    if fmt_type == "audio/pcma":
        return b"\xd5" * (bpm * ms)
    return b"\x00" * (bpm * ms)



# --------------------------------------------------------------------------------------------
# WAV files, synthetic speech and μ-law frames (the simulated caller's voice)
# --------------------------------------------------------------------------------------------


def load_wav_pcm16(path: str, target_rate: int = SAMPLE_RATE) -> bytes:
    """Read a WAV file (PCM 8/16/24/32-bit, float32, A-law or μ-law; any rate; mono or multi-channel)
    and return 16-bit mono PCM at ``target_rate`` (8 kHz unless told)."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError(f"{path}: not a RIFF/WAVE file")
    fmt: tuple[int, int, int, int] | None = None  # (format tag, channels, rate, bits)
    frames: bytes | None = None
    pos = 12
    while pos + 8 <= len(data):
        chunk_id = data[pos : pos + 4]
        (size,) = struct.unpack("<I", data[pos + 4 : pos + 8])
        body = data[pos + 8 : pos + 8 + size]  # slicing clamps a streamed (0xFFFFFFFF) size
        if chunk_id == b"fmt ":
            tag, channels, rate, _byte_rate, _align, bits = struct.unpack("<HHIIHH", body[:16])
            if tag == 0xFFFE and len(body) >= 26:  # WAVE_FORMAT_EXTENSIBLE: real tag is the GUID's first word
                (tag,) = struct.unpack("<H", body[24:26])
            fmt = (tag, channels, rate, bits)
        elif chunk_id == b"data":
            frames = body
        pos += 8 + size + (size & 1)
    if fmt is None or frames is None:
        raise ValueError(f"{path}: missing fmt or data chunk")
    tag, channels, rate, bits = fmt
    if channels < 1 or rate < 1:
        raise ValueError(f"{path}: bad header (channels={channels}, rate={rate})")
    if tag == 1:  # PCM
        width = bits // 8
        if width not in (1, 2, 3, 4):
            raise ValueError(f"{path}: unsupported PCM width {bits} bits")
        frames = frames[: len(frames) - len(frames) % (width * channels)]
        if width == 1:  # 8-bit WAV is unsigned
            frames = audioop.bias(frames, 1, -128)
        pcm = audioop.lin2lin(frames, width, 2) if width != 2 else frames
    elif tag == 3 and bits == 32:  # IEEE float
        floats = array("f")
        floats.frombytes(frames[: len(frames) - len(frames) % 4])
        pcm = array("h", (int(max(-1.0, min(1.0, s)) * 32767) for s in floats)).tobytes()
    elif tag == 7:
        pcm = audioop.ulaw2lin(frames, 2)
    elif tag == 6:
        pcm = audioop.alaw2lin(frames, 2)
    else:
        raise ValueError(f"{path}: unsupported WAV format tag {tag} ({bits} bits)")
    if channels == 2:
        pcm = audioop.tomono(pcm, 2, 0.5, 0.5)
    elif channels > 2:  # keep the first channel
        samples = array("h")
        samples.frombytes(pcm[: len(pcm) - len(pcm) % (2 * channels)])
        pcm = samples[::channels].tobytes()
    if rate != target_rate:
        pcm, _ = audioop.ratecv(pcm, 2, 1, rate, target_rate, None)
    return pcm


def synthetic_speech_pcm16(length_ms: int, seed: int = 0) -> bytes:
    """Speech-like 8 kHz 16-bit PCM: voiced 'syllables' (a glottal-ish harmonic series shaped by two
    random formants, sin² envelope, 110-270 ms) separated by short gaps. Deterministic per seed.
    Enough to trip energy-based VADs and to tell "speech" from μ-law silence; not intelligible."""
    rng = random.Random(seed)
    total = max(0, int(length_ms)) * BYTES_PER_MS
    out = array("h", bytes(2 * total))
    two_pi = 2.0 * math.pi
    t = 0
    while t < total:
        syllable = rng.randint(110, 270) * BYTES_PER_MS
        gap = rng.randint(15, 70) * BYTES_PER_MS
        f0 = rng.uniform(105.0, 190.0)
        glide = rng.uniform(-0.15, 0.15)
        f1, f2 = rng.uniform(300.0, 800.0), rng.uniform(900.0, 2300.0)
        amplitude = rng.uniform(0.45, 0.8) * 12000.0
        harmonics = [k for k in range(1, 16) if k * f0 < 3400.0]
        weights = [
            math.exp(-(((k * f0 - f1) / 160.0) ** 2)) + 0.6 * math.exp(-(((k * f0 - f2) / 220.0) ** 2)) + 0.12 / k
            for k in harmonics
        ]
        norm = sum(weights)
        weights = [w / norm for w in weights]
        pairs = list(zip(harmonics, weights))
        phase = 0.0
        n = min(syllable, total - t)
        for j in range(n):
            x = j / syllable
            phase += two_pi * f0 * (1.0 + glide * x) / SAMPLE_RATE
            s = 0.0
            for k, w in pairs:
                s += w * math.sin(k * phase)
            env = math.sin(math.pi * x) ** 2
            out[t + j] = int(amplitude * env * (s + 0.04 * (rng.random() - 0.5)))
        t += syllable + gap
    return out.tobytes()


def trim_silence(pcm: bytes, threshold: int = 300, margin_frames: int = 1) -> bytes:
    """Cut leading/trailing 20 ms frames whose RMS is under `threshold`, so an utterance's end
    (what latency is measured from) is the end of speech, not of the file."""
    step = FRAME_BYTES * 2  # 20 ms of 16-bit samples
    levels = [audioop.rms(pcm[i : i + step], 2) for i in range(0, len(pcm), step)]
    loud = [i for i, level in enumerate(levels) if level >= threshold]
    if not loud:
        return pcm
    first = max(0, loud[0] - margin_frames)
    last = min(len(levels), loud[-1] + 1 + margin_frames)
    return pcm[first * step : last * step]


def mulaw_frames_b64(pcm: bytes) -> list[str]:
    """16-bit 8 kHz PCM → base64 μ-law payloads of exactly 160 bytes (last one padded with silence)."""
    mulaw = audioop.lin2ulaw(pcm, 2)
    if len(mulaw) % FRAME_BYTES:
        mulaw += bytes([MULAW_SILENCE]) * (FRAME_BYTES - len(mulaw) % FRAME_BYTES)
    return [base64.b64encode(mulaw[i : i + FRAME_BYTES]).decode("ascii") for i in range(0, len(mulaw), FRAME_BYTES)]


def write_wav(path: str, pcm16: bytes) -> None:
    import wave

    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm16)
