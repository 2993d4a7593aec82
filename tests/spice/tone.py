"""TEST ONLY: sine tones as S16LE PCM, and what a received recording holds.

make(freq, rate, channels, frames, start=0)  -> bytes of a sine at about half scale
analyse(pcm, rate, channels)                 -> {"frequency", "purity", "seconds", "rms"}

The frequency comes from the rising zero crossings of the left channel, interpolated between
samples (exact for a clean tone, within a fraction of a hertz over a second); a crossing counts
only after the signal went below -10 % of its RMS since the last one, so a lossy codec's noise
near zero does not add crossings. "purity" is the share of the signal's power near that
frequency (Goertzel, the best within 1 Hz in quarter steps), near 1 for a clean sine, low for noise or a mix. No numpy: the test machines have only Debian's python3 and gi.
"""
import math
import struct


def make(freq, rate, channels, frames, start=0, amplitude=16000):
    out = bytearray()
    for i in range(start, start + frames):
        v = int(amplitude * math.sin(2 * math.pi * freq * i / rate))
        out += struct.pack("<" + "h" * channels, *([v] * channels))
    return bytes(out)


def left(pcm, channels):
    n = len(pcm) // (2 * channels)
    samples = struct.unpack("<" + "h" * (n * channels), pcm[: n * 2 * channels])
    return samples[::channels]


def goertzel_power(x, rate, freq):
    w = 2 * math.pi * freq / rate
    c = 2 * math.cos(w)
    s1 = s2 = 0.0
    for v in x:
        s1, s2 = v + c * s1 - s2, s1
    return s1 * s1 + s2 * s2 - c * s1 * s2


def analyse(pcm, rate, channels):
    x = left(pcm, channels)
    if len(x) < rate // 20:
        return {"frequency": 0.0, "purity": 0.0, "seconds": len(x) / rate, "rms": 0.0}
    energy = sum(v * v for v in x)
    rms = math.sqrt(energy / len(x))
    low = -0.1 * rms
    crossings = []
    armed = False
    for i in range(1, len(x)):
        a, b = x[i - 1], x[i]
        if a < low:
            armed = True
        if armed and a < 0 <= b:
            crossings.append(i - 1 + (-a) / (b - a))
            armed = False
    frequency = 0.0
    if len(crossings) >= 2:
        frequency = (len(crossings) - 1) * rate / (crossings[-1] - crossings[0])
    purity = 0.0
    if energy and frequency:
        purity = max(2 * goertzel_power(x, rate, frequency + d / 4) / (len(x) * energy)
                     for d in range(-4, 5))
    return {"frequency": frequency, "purity": purity, "seconds": len(x) / rate, "rms": rms}
