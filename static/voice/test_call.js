// The browser test call: the owner talks to their own receptionist.
//
// Microphone -> capture worklet (PCM16 24 kHz, 40 ms frames) -> /ws/browser/call/ -> the call session.
// Agent audio <- the same socket -> player worklet (a gapless queue). The session's marks go into the
// player's queue and are echoed back only once the audio before them has been rendered, so barge-in
// truncation and "hang up after the goodbye" work as on the phone. `clear` stops playback at once.
//
// Test hooks (read by the browser test, set only from real events): on #test-call, data-status
// (idle | connecting | live | ending | ended | error), data-played-ms (agent audio actually rendered by the
// player worklet), data-sent-ms (microphone audio sent), data-call-id, data-minutes-left and
// data-seconds-left (test-call time left today, as the server last said).
(() => {
  "use strict";

  const RATE = 24000;
  const FRAME_SAMPLES = 960; // 40 ms at 24 kHz

  const root = document.getElementById("test-call");
  if (!root) return;
  const $ = (id) => document.getElementById(id);
  const ui = {
    status: $("test-call-status"),
    start: $("test-call-start"),
    hangup: $("test-call-hangup"),
    alert: $("test-call-alert"),
    transcript: $("test-call-transcript"),
    empty: $("test-call-empty"),
    latencyLast: $("test-call-latency-last"),
    latencyMedian: $("test-call-latency-median"),
    played: $("test-call-played"),
    clock: $("test-call-clock"),
    level: $("test-call-level"),
    saved: $("test-call-saved"),
    link: $("test-call-link"),
    minutes: $("test-call-minutes"),
  };

  let call = null; // everything of the current call; null when idle

  const CLOSE_MESSAGES = {
    4401: "You are signed out. Sign in again to make a test call.",
    4403: "This page can't start a call for your business (no access to it, or the page came from another site).",
    4400: "The call was closed because the browser sent data the server did not understand.",
    4429: "Your business already has as many test calls running as it may. Hang up another one (another tab, or a teammate's) and try again.",
    4402: "There are no test-call minutes left.",
    4413: "The call was closed because the browser sent audio faster than real time.",
    1009: "The call was closed because the browser sent too much data at once.",
  };

  function setStatus(status, text) {
    root.dataset.status = status;
    ui.status.textContent = text;
    ui.status.className = "test-call-status is-" + status;
    const active = status === "connecting" || status === "live";
    ui.start.disabled = active || status === "ending";
    ui.hangup.disabled = !active;
  }

  function showAlert(kind, text) {
    ui.alert.hidden = false;
    ui.alert.className = "alert alert-" + kind;
    ui.alert.textContent = text;
  }

  function fail(text) {
    showAlert("error", text);
    setStatus("error", "Not connected");
    teardown();
  }

  // Lines go where they happened in the call (`atMs`, ms since it started), not where their message arrived: a
  // caller's words are transcribed seconds after they were said, often after the receptionist has answered.
  function addLine(className, who, text, extra, atMs) {
    ui.empty.hidden = true;
    const li = document.createElement("li");
    li.className = className;
    const at = typeof atMs === "number" ? atMs : Infinity;
    li.dataset.at = String(at);
    if (who) {
      const label = document.createElement("span");
      label.className = "who";
      label.textContent = who;
      li.appendChild(label);
    }
    li.appendChild(document.createTextNode(text));
    if (extra) {
      const note = document.createElement("span");
      note.className = "turn-note";
      note.textContent = extra;
      li.appendChild(note);
    }
    const later = Array.from(ui.transcript.children).find((line) => Number(line.dataset.at) > at);
    ui.transcript.insertBefore(li, later || null);
    li.scrollIntoView({ block: "nearest" });
    return li;
  }

  function median(values) {
    const sorted = [...values].sort((a, b) => a - b);
    const mid = Math.floor(sorted.length / 2);
    return sorted.length % 2 ? sorted[mid] : Math.round((sorted[mid - 1] + sorted[mid]) / 2);
  }

  function base64FromBuffer(buffer) {
    const bytes = new Uint8Array(buffer);
    let binary = "";
    for (let i = 0; i < bytes.length; i += 0x8000) {
      binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    }
    return btoa(binary);
  }

  function bufferFromBase64(text) {
    const binary = atob(text);
    const bytes = new Uint8Array(binary.length & ~1); // whole 16-bit samples
    for (let i = 0; i < bytes.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes.buffer;
  }

  function send(message) {
    if (call && call.ws && call.ws.readyState === WebSocket.OPEN) call.ws.send(JSON.stringify(message));
  }

  // --- audio --------------------------------------------------------------------------------------

  async function openAudio(stream) {
    // A 24 kHz context needs no resampling (the browser converts the microphone). Some browsers refuse to
    // connect a microphone to a context at another rate than the device's: then both worklets resample.
    let ctx, source;
    try {
      ctx = new AudioContext({ sampleRate: RATE, latencyHint: "interactive" });
      source = ctx.createMediaStreamSource(stream);
    } catch (err) {
      if (ctx) ctx.close();
      ctx = new AudioContext({ latencyHint: "interactive" });
      source = ctx.createMediaStreamSource(stream);
    }
    await ctx.audioWorklet.addModule(root.dataset.micWorklet);
    await ctx.audioWorklet.addModule(root.dataset.playerWorklet);
    const mic = new AudioWorkletNode(ctx, "pcm16-capture", {
      processorOptions: { targetRate: RATE, frameSamples: FRAME_SAMPLES },
    });
    const silent = ctx.createGain(); // keeps the capture worklet running without playing the microphone back
    silent.gain.value = 0;
    source.connect(mic).connect(silent).connect(ctx.destination);
    const player = new AudioWorkletNode(ctx, "pcm16-player", {
      numberOfInputs: 0,
      outputChannelCount: [1],
      processorOptions: { sourceRate: RATE },
    });
    player.connect(ctx.destination);
    if (ctx.state === "suspended") await ctx.resume();
    return { ctx, mic, player };
  }

  function onMicFrame(event) {
    if (!call || call.status !== "live") return; // before the agent is connected nothing listens
    send({ type: "audio", audio: base64FromBuffer(event.data.pcm) });
    call.sentSamples += FRAME_SAMPLES;
    root.dataset.sentMs = String(Math.round((call.sentSamples / RATE) * 1000));
    ui.level.value = Math.min(1, event.data.rms * 4);
  }

  function onPlayer(event) {
    const message = event.data;
    if (message.type === "mark") {
      send({ type: "mark", name: message.name });
    } else if (message.type === "cleared") {
      for (const name of message.marks) send({ type: "mark", name }); // as Twilio does after a clear
    }
    if (message.playedMs !== undefined) {
      root.dataset.playedMs = String(message.playedMs);
      ui.played.textContent = (message.playedMs / 1000).toFixed(1) + " s";
    }
  }

  // --- the call socket -----------------------------------------------------------------------------

  const HANDLERS = {
    call(message) {
      root.dataset.callId = String(message.call_id);
      ui.link.href = root.dataset.callUrl.replace(/\/0\/$/, "/" + message.call_id + "/");
    },
    live() {
      call.status = "live";
      call.startedAt = performance.now();
      call.clock = setInterval(() => {
        const s = Math.floor((performance.now() - call.startedAt) / 1000);
        ui.clock.textContent = Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
      }, 500);
      setStatus("live", "Live — talk to your receptionist");
    },
    audio(message) {
      const pcm = bufferFromBase64(message.audio);
      call.audio.player.port.postMessage({ type: "audio", pcm }, [pcm]);
    },
    mark(message) {
      call.audio.player.port.postMessage({ type: "mark", name: message.name });
    },
    clear() {
      call.audio.player.port.postMessage({ type: "clear" }); // barge-in: stop talking now
    },
    transcript(message) {
      if (message.speaker === "agent") {
        const latency = call.pendingLatency;
        call.pendingLatency = null;
        addLine("turn turn-agent", "Receptionist", message.text,
          [latency !== null ? `replied in ${latency} ms` : "", message.interrupted ? "interrupted" : ""]
            .filter(Boolean).join(" · "), message.at_ms);
      } else {
        addLine("turn turn-caller", "You", message.text, "", message.at_ms);
      }
    },
    latency(message) {
      if (typeof message.ms !== "number") return;
      call.pendingLatency = message.ms;
      call.latencies.push(message.ms);
      ui.latencyLast.textContent = message.ms + " ms";
      ui.latencyMedian.textContent = median(call.latencies) + " ms";
    },
    barge_in(message) {
      addLine("turn-event", "", "You interrupted the receptionist.", "", message.at_ms);
    },
    tool(message) {
      const what = {
        ask_supervisor: "Checking with the supervisor…",
        end_call: "The receptionist is ending the call.",
        transfer_to_human: "The receptionist is transferring the call.",
      }[message.name] || `Tool: ${message.name}`;
      addLine("turn-event", "", what, "", message.at_ms);
    },
    hangup() {
      call.endedBy = "agent";
      addLine("turn-event", "", "The receptionist hung up.");
    },
    transfer(message) {
      call.endedBy = "transfer";
      showAlert("info", message.message);
    },
    fallback(message) {
      call.endedBy = "fallback";
      showAlert("error", message.note ? message.message + " " + message.note : message.message);
      // The caller should hear something sensible, as a phone caller would.
      if ("speechSynthesis" in window) {
        const utterance = new SpeechSynthesisUtterance(message.message);
        if (message.language) utterance.lang = message.language;
        window.speechSynthesis.speak(utterance);
      }
    },
    ended() {
      call.endedBy = call.endedBy || "server"; // the server has recorded the call; it closes the socket next
    },
    refused(message) {
      call.refusal = message.message; // no minutes left: the server closes the socket next (4402)
    },
    limit(message) {
      call.limit = message.message; // the minutes ran out: the receptionist said goodbye and hangs up
    },
  };

  // The minutes left change with every call (this tab's, a teammate's): ask the server again after each one.
  async function refreshMinutes() {
    try {
      const response = await fetch(root.dataset.minutesUrl, { credentials: "same-origin" });
      if (!response.ok) return;
      const minutes = await response.json();
      ui.minutes.textContent = minutes.text;
      root.dataset.minutesLeft = String(minutes.minutes_left_today);
      root.dataset.secondsLeft = String(minutes.seconds_left_today);
    } catch (err) {
      // The page keeps the last figure; the next call's refusal explains itself anyway.
    }
  }

  function onSocketMessage(event) {
    let message;
    try {
      message = JSON.parse(event.data);
    } catch (err) {
      return;
    }
    const handler = HANDLERS[message.type];
    if (handler && call) handler(message);
  }

  function onSocketClose(event) {
    if (!call) return;
    const current = call;
    // Whatever ended it, a call that was opened is recorded by the server (with how it ended).
    if (root.dataset.callId) ui.saved.hidden = false;
    refreshMinutes();
    const explained = current.refusal || CLOSE_MESSAGES[event.code];
    if (explained) {
      fail(explained);
      return;
    }
    if (current.limit) showAlert("info", current.limit);
    if (current.endedBy === "fallback") {
      setStatus("error", "The receptionist is unavailable");
    } else if (current.endedBy || current.status === "ending") {
      setStatus("ended", current.endedBy === "agent" ? "Call ended by the receptionist" : "Call ended");
    } else if (current.status === "connecting") {
      showAlert("error", "Could not connect the call. Try again in a moment.");
      setStatus("error", "Not connected");
    } else {
      showAlert("error", "The connection dropped; the call has ended.");
      setStatus("error", "Disconnected");
    }
    teardown();
  }

  function teardown() {
    if (!call) return;
    const current = call;
    call = null;
    clearInterval(current.clock);
    if (current.stream) current.stream.getTracks().forEach((track) => track.stop());
    if (current.audio) current.audio.ctx.close();
    if (current.ws && current.ws.readyState <= WebSocket.OPEN) current.ws.close(1000);
  }

  // --- buttons -------------------------------------------------------------------------------------

  async function start() {
    ui.alert.hidden = true;
    ui.saved.hidden = true;
    ui.transcript.replaceChildren();
    ui.empty.hidden = false;
    ui.latencyLast.textContent = ui.latencyMedian.textContent = "—";
    ui.played.textContent = "0.0 s";
    ui.clock.textContent = "0:00";
    root.dataset.playedMs = root.dataset.sentMs = "0";
    delete root.dataset.callId;
    call = { status: "connecting", latencies: [], pendingLatency: null, sentSamples: 0, endedBy: "" };
    setStatus("connecting", "Connecting…");

    if (!window.isSecureContext || !navigator.mediaDevices || !window.AudioWorkletNode) {
      fail("This browser can't use the microphone here: open the dashboard over https (or on localhost).");
      return;
    }
    const current = call;
    try {
      current.stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
      });
    } catch (err) {
      if (err.name === "NotAllowedError" || err.name === "SecurityError") {
        fail("Microphone permission denied. Allow the microphone for this site (the icon in the address bar), then start the call again.");
      } else if (err.name === "NotFoundError" || err.name === "OverconstrainedError") {
        fail("No microphone found. Connect one and start the call again.");
      } else {
        fail("The microphone could not be opened: " + err.message);
      }
      return;
    }
    if (call !== current) return; // hung up meanwhile
    try {
      current.audio = await openAudio(current.stream);
    } catch (err) {
      fail("Audio could not start in this browser: " + err.message);
      return;
    }
    if (call !== current) return;
    current.audio.mic.port.onmessage = onMicFrame;
    current.audio.player.port.onmessage = onPlayer;

    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    current.ws = new WebSocket(scheme + "//" + location.host + root.dataset.wsPath);
    current.ws.onmessage = onSocketMessage;
    current.ws.onclose = onSocketClose;
  }

  function hangUp() {
    if (!call) return;
    call.status = "ending";
    setStatus("ending", "Hanging up…");
    call.audio && call.audio.player.port.postMessage({ type: "clear" });
    if (call.ws && call.ws.readyState === WebSocket.OPEN) {
      send({ type: "hangup" }); // the server records the call, answers "ended" and closes
    } else {
      setStatus("ended", "Call ended");
      teardown();
    }
  }

  ui.start.addEventListener("click", start);
  ui.hangup.addEventListener("click", hangUp);
  // Closing or leaving the page hangs up, so the call is recorded as ended by the caller.
  window.addEventListener("pagehide", () => send({ type: "hangup" }));
  setStatus("idle", "Ready");
})();
