// Gapless playback of the agent's audio for the browser test call.
//
// The page posts PCM16 24 kHz chunks and the call session's marks in the order they arrived; this queue
// plays the chunks back to back and reports a mark only when every sample before it has been rendered,
// so the server knows how much the caller really heard (barge-in truncation, hanging up after a goodbye).
// `clear` drops everything queued at once and hands back the marks that were still waiting, as Twilio does.

class Pcm16Player extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = (options && options.processorOptions) || {};
    this.step = (opts.sourceRate || 24000) / sampleRate; // source samples per output sample
    this.queue = []; // {samples: Float32Array} or {mark: name}
    this.pos = 0; // fractional read position in the head chunk
    this.playedFrames = 0; // output frames of agent audio rendered so far
    this.reportedFrames = 0;
    this.port.onmessage = (event) => this.receive(event.data);
  }

  receive(message) {
    if (message.type === "audio") {
      const pcm = new Int16Array(message.pcm);
      const samples = new Float32Array(pcm.length);
      for (let i = 0; i < pcm.length; i++) samples[i] = pcm[i] / 32768;
      this.queue.push({ samples });
    } else if (message.type === "mark") {
      this.queue.push({ mark: message.name });
    } else if (message.type === "clear") {
      const marks = this.queue.filter((item) => item.mark !== undefined).map((item) => item.mark);
      this.queue = [];
      this.pos = 0;
      this.port.postMessage({ type: "cleared", marks, playedMs: this.playedMs() });
    }
  }

  playedMs() {
    return Math.round((this.playedFrames / sampleRate) * 1000);
  }

  process(inputs, outputs) {
    const channels = outputs[0];
    const out = channels[0];
    let i = 0;
    while (i < out.length && this.queue.length) {
      const head = this.queue[0];
      if (head.mark !== undefined) {
        this.queue.shift();
        this.port.postMessage({ type: "mark", name: head.mark, playedMs: this.playedMs() });
        continue;
      }
      const s = head.samples;
      while (i < out.length && this.pos < s.length) {
        const k = Math.floor(this.pos);
        const frac = this.pos - k;
        const a = s[k];
        const b = k + 1 < s.length ? s[k + 1] : a;
        out[i++] = a + (b - a) * frac;
        this.pos += this.step;
        this.playedFrames += 1;
      }
      if (this.pos >= s.length) {
        this.pos -= s.length;
        this.queue.shift();
      }
    }
    for (; i < out.length; i++) out[i] = 0;
    for (let c = 1; c < channels.length; c++) channels[c].set(out);
    const unreported = this.playedFrames - this.reportedFrames;
    if (unreported >= sampleRate / 10 || (unreported > 0 && !this.queue.length)) { // ~10 a second, and at the end
      this.reportedFrames = this.playedFrames;
      this.port.postMessage({ type: "played", playedMs: this.playedMs() });
    }
    return true;
  }
}

registerProcessor("pcm16-player", Pcm16Player);
