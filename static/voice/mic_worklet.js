// Microphone capture for the browser test call: Float32 at the context's rate -> PCM16 little-endian at
// 24 kHz, posted in fixed frames (the page sends each one over the call socket).
//
// With `new AudioContext({sampleRate: 24000})` the browser already resamples the microphone and this is a
// straight conversion. When the context runs at another rate (browsers that refuse a 24 kHz context with a
// microphone), the input is low-passed below the new Nyquist frequency (6th-order Butterworth, so a
// 48 kHz microphone's hiss above 12 kHz does not fold back into the speech) and linearly interpolated down.

class Pcm16Capture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = (options && options.processorOptions) || {};
    this.targetRate = opts.targetRate || 24000;
    this.frameSamples = opts.frameSamples || 960; // 40 ms at 24 kHz
    this.step = sampleRate / this.targetRate; // input samples per output sample
    this.pos = 0; // read position in the current block; -1 is the last sample of the previous block
    this.prev = 0;
    this.lowpass = this.step > 1 ? butterworthLowpass(sampleRate, 0.4 * this.targetRate) : null;
    this.newFrame();
  }

  newFrame() {
    this.buffer = new ArrayBuffer(this.frameSamples * 2);
    this.view = new DataView(this.buffer);
    this.count = 0;
    this.sumSquares = 0;
  }

  push(x) {
    const v = x > 1 ? 1 : x < -1 ? -1 : x;
    this.view.setInt16(this.count * 2, v < 0 ? v * 0x8000 : v * 0x7fff, true);
    this.sumSquares += v * v;
    this.count += 1;
    if (this.count === this.frameSamples) {
      const rms = Math.sqrt(this.sumSquares / this.frameSamples);
      this.port.postMessage({ pcm: this.buffer, rms }, [this.buffer]);
      this.newFrame();
    }
  }

  process(inputs) {
    const input = inputs[0];
    if (!input || !input[0] || input[0].length === 0) return true;
    let block = input[0]; // a stereo microphone is reported even when mono is asked for: take channel 0
    if (this.step === 1) {
      for (let i = 0; i < block.length; i++) this.push(block[i]);
      return true;
    }
    if (this.lowpass) block = this.lowpass(block);
    const last = block.length - 1;
    while (this.pos < last) {
      const k = Math.floor(this.pos);
      const frac = this.pos - k;
      const a = k < 0 ? this.prev : block[k];
      const b = block[k + 1];
      this.push(a + (b - a) * frac);
      this.pos += this.step;
    }
    this.pos -= block.length;
    this.prev = block[last];
    return true;
  }
}

// A 6th-order Butterworth low-pass as three cascaded biquads; returns a function filtering one block.
function butterworthLowpass(rate, cutoff) {
  const stages = [0.5176, 0.7071, 1.9319].map((q) => biquadLowpass(rate, cutoff, q));
  return (block) => stages.reduce((signal, stage) => stage(signal), block);
}

// RBJ cookbook low-pass biquad; returns a function filtering one block, keeping its state.
function biquadLowpass(rate, cutoff, q) {
  const w = (2 * Math.PI * cutoff) / rate;
  const alpha = Math.sin(w) / (2 * q);
  const cos = Math.cos(w);
  const a0 = 1 + alpha;
  const b0 = (1 - cos) / 2 / a0, b1 = (1 - cos) / a0, b2 = b0;
  const a1 = (-2 * cos) / a0, a2 = (1 - alpha) / a0;
  let x1 = 0, x2 = 0, y1 = 0, y2 = 0;
  let out = new Float32Array(128);
  return (block) => {
    if (out.length !== block.length) out = new Float32Array(block.length);
    for (let i = 0; i < block.length; i++) {
      const x = block[i];
      const y = b0 * x + b1 * x1 + b2 * x2 - a1 * y1 - a2 * y2;
      x2 = x1; x1 = x; y2 = y1; y1 = y;
      out[i] = y;
    }
    return out;
  };
}

registerProcessor("pcm16-capture", Pcm16Capture);
