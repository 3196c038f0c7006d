"""Effective memory bandwidth of a GPU call: the bytes of its inputs and output per second,
against a streaming kernel with the same traffic timed in the same run (``a + b`` into a third
array for two inputs, a copy for one) and against the device's peak. The issues' "fraction of
the device's memory bandwidth" targets read ``fraction_of_streaming`` (what the device moves in
practice) and ``fraction_of_peak`` (its data sheet)."""

from __future__ import annotations

import time


def peak_bandwidth(xp):
    """The device's memory bandwidth from its attributes, 2 transfers per memory clock times
    the bus width (bytes per second); None where the runtime no longer reports the clock
    (CUDA 13 dropped it from the device properties)."""
    rt, dev = xp.cuda.runtime, xp.cuda.Device().id
    props = rt.getDeviceProperties(dev)
    clock_khz, bus_bits = props.get("memoryClockRate"), props.get("memoryBusWidth")
    if not clock_khz:
        try:
            clock_khz = rt.deviceGetAttribute(36, dev)  # cudaDevAttrMemoryClockRate
            bus_bits = bus_bits or rt.deviceGetAttribute(37, dev)  # cudaDevAttrGlobalMemoryBusWidth
        except Exception:
            return None
    return 2.0 * clock_khz * 1e3 * bus_bits / 8 if clock_khz and bus_bits else None


def _best(fn, repeat=20):
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def record(be, benchmark, fn, inputs, output, label):
    """Time ``fn()`` to completion (a device sync after it) with ``benchmark`` and store in its
    ``extra_info`` GB/s counted as ``inputs`` + ``output`` bytes and both fractions; prints one
    line."""
    xp = be.xp
    out = xp.empty_like(output)

    def call():
        fn()
        be.sync()

    if len(inputs) == 2:
        def stream():
            xp.add(inputs[0], inputs[1], out=out)
            be.sync()
    else:
        def stream():
            xp.copyto(out, inputs[0])
            be.sync()
    call()
    stream()
    t_stream = _best(stream)
    benchmark(call)
    nbytes = sum(a.nbytes for a in inputs) + output.nbytes
    rate = nbytes / benchmark.stats.stats.median
    peak = peak_bandwidth(xp)
    benchmark.extra_info.update(GB_per_s=rate / 1e9, streaming_GB_per_s=nbytes / t_stream / 1e9,
                                fraction_of_streaming=rate * t_stream / nbytes,
                                fraction_of_peak=rate / peak if peak else None)
    print(f"\n{label}: {rate / 1e9:.0f} GB/s, {rate * t_stream / nbytes:.2f} of a streaming kernel "
          f"({nbytes / t_stream / 1e9:.0f} GB/s), peak {peak / 1e9 if peak else float('nan'):.0f} GB/s")
