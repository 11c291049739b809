/* The upload page: tus-js-client uploads with resumption, then status polling and HLS playback
 * from `playable` on, with storyboard thumbnails over the timeline.
 * Globals from the vendored npm packages: `tus` (tus-js-client), `Hls` (hls.js). */
(function () {
  "use strict";

  var params = new URLSearchParams(location.search);
  var ENDPOINT = new URL("/files/", location.href).href;
  // Smaller chunks mean finer-grained resume points on flaky networks; ?chunk_size= overrides.
  var CHUNK_SIZE = Number(params.get("chunk_size")) || 8 * 1024 * 1024;
  var POLL_MS = Number(params.get("poll_ms")) || 1500;
  var FINAL = { ready: true, failed: true, terminated: true, expired: true };
  var tokenInput = document.getElementById("token");
  var tokenState = document.getElementById("token-state");
  var rows = document.getElementById("uploads");
  var template = document.getElementById("row");

  // -- token: from #token=… (what `upload-service dev` prints), else the field ---------------
  function loadToken() {
    var fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
    if (fromHash) sessionStorage.setItem("upload-token", fromHash);
    tokenInput.value = fromHash || sessionStorage.getItem("upload-token") || "";
    describeToken();
  }
  function describeToken() {
    var token = tokenInput.value.trim();
    if (!token) { tokenState.textContent = "no token"; return; }
    try {
      var claims = JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
      var left = Math.round(claims.exp - Date.now() / 1000);
      tokenState.textContent = "as " + claims.sub + (left > 0 ? ", valid " + duration(left) : ", expired");
    } catch (e) {
      tokenState.textContent = "not a token";
    }
  }
  tokenInput.addEventListener("input", function () {
    sessionStorage.setItem("upload-token", tokenInput.value.trim());
    describeToken();
  });

  // -- formatting ----------------------------------------------------------------------------
  function bytes(n) {
    var units = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : String(Math.round(n))) + " " + units[i];
  }
  function duration(s) {
    if (!isFinite(s) || s < 0) return "--:--";
    s = Math.round(s);
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    var mm = (h && m < 10 ? "0" : "") + m, ss = (sec < 10 ? "0" : "") + sec;
    return h ? h + ":" + mm + ":" + ss : (m < 10 ? "0" : "") + m + ":" + ss;
  }

  // -- one row per file ------------------------------------------------------------------------
  function Row(file) {
    this.el = template.content.firstElementChild.cloneNode(true);
    this.el.querySelector(".name").textContent = file.name;
    this.el.querySelector(".size").textContent = bytes(file.size);
    this.samples = [];
    rows.appendChild(this.el);
  }
  Row.prototype.q = function (sel) { return this.el.querySelector(sel); };
  Row.prototype.setState = function (state, text) {
    this.el.dataset.state = state;
    this.q(".state").textContent = text || state;
  };
  Row.prototype.progress = function (sent, total) {
    var now = performance.now();
    this.samples.push([now, sent]);
    // Speed over the last 5 s: recent speed, not the lifetime average.
    while (this.samples.length > 2 && now - this.samples[0][0] > 5000) this.samples.shift();
    var first = this.samples[0], rate = null;
    if (this.samples.length > 1 && now > first[0]) rate = (sent - first[1]) / ((now - first[0]) / 1000);
    var percent = total ? (sent / total) * 100 : 100;
    this.el.dataset.percent = percent.toFixed(1);
    this.el.dataset.sent = String(sent);
    this.q(".fill").style.width = percent + "%";
    this.q(".bar").setAttribute("aria-valuenow", percent.toFixed(1));
    this.q(".percent").textContent = percent.toFixed(1) + "%";
    this.q(".bytes").textContent = bytes(sent) + " / " + bytes(total);
    this.q(".speed").textContent = rate ? bytes(rate) + "/s" : "–/s";
    this.q(".eta").textContent = "ETA " + (sent >= total ? "00:00" : duration(rate ? (total - sent) / rate : NaN));
  };

  function addFile(file) {
    var token = tokenInput.value.trim();
    var row = new Row(file);
    if (!token) { row.el.classList.add("failed"); row.setState("error", "no upload token: paste one above"); return; }
    var auth = { Authorization: "Bearer " + token };
    var toggle = row.q(".toggle");
    var upload = new tus.Upload(file, {
      endpoint: ENDPOINT,
      chunkSize: CHUNK_SIZE,
      retryDelays: [0, 1000, 3000, 5000, 10000, 20000, 30000],
      headers: auth,
      metadata: { filename: file.name, filetype: file.type || "application/octet-stream" },
      storeFingerprintForResuming: true,
      removeFingerprintOnSuccess: true,
      onAfterResponse: function (req, res) {
        // A HEAD is how a resumed upload learns the server's offset: show where it restarts.
        if (req.getMethod() === "HEAD" && res.getStatus() === 200) {
          var offset = parseInt(res.getHeader("Upload-Offset"), 10);
          row.el.dataset.startOffset = String(offset);
          row.setState("resuming", "resuming at " + bytes(offset));
        }
      },
      onUploadUrlAvailable: function () {
        row.el.dataset.uploadUrl = upload.url;
        if (row.el.dataset.startOffset === undefined) row.el.dataset.startOffset = "0";
      },
      onProgress: function (sent, total) {
        if (row.el.dataset.state !== "uploading") {
          var from = Number(row.el.dataset.startOffset || 0);
          row.setState("uploading", from ? "uploading (resumed at " + bytes(from) + ")" : "uploading");
        }
        row.progress(sent, total);
      },
      onError: function (err) {
        var res = err.originalResponse;
        var status = res ? res.getStatus() : 0;
        var why = status === 401 ? "the token was refused (expired?)" : status === 413 ? "the file is too large" : String(err.message || err);
        row.el.classList.add("failed");
        row.setState("error", "upload failed: " + why);
        toggle.hidden = true;
      },
      onSuccess: function () {
        toggle.hidden = true;
        row.el.classList.add("done");
        row.progress(file.size, file.size);
        var id = upload.url.replace(/\/+$/, "").split("/").pop();
        row.el.dataset.uploadId = id;
        row.setState("uploaded", "uploaded; waiting for processing");
        follow(row, id, auth);
        refreshUnfinished();
      }
    });
    toggle.addEventListener("click", function () {
      if (toggle.textContent === "Pause") {
        upload.abort();  // keeps the upload on the server: start() continues it
        toggle.textContent = "Resume";
        row.setState("paused", "paused at " + bytes(Number(row.el.dataset.sent || 0)));
      } else {
        toggle.textContent = "Pause";
        row.setState("resuming", "resuming");
        upload.start();
      }
    });
    row.setState("starting", "looking for an earlier upload of this file");
    upload.findPreviousUploads().then(function (previous) {
      if (previous.length) {
        previous.sort(function (a, b) { return String(b.creationTime).localeCompare(String(a.creationTime)); });
        upload.resumeFromPreviousUpload(previous[0]);
      }
      upload.start();
    });
  }

  // -- processing state, then playback -----------------------------------------------------------
  function describe(record) {
    // "transcode 42%, ready in about 2 min": the whole job's percent and the time left.
    var p = record.progress;
    if (!p) return "";
    var text = " (" + p.stage + " " + Math.round(p.percent || 0) + "%";
    if (p.eta_s > 0) {
      var eta = p.eta_s < 60 ? Math.max(1, Math.round(p.eta_s)) + " s" : Math.round(p.eta_s / 60) + " min";
      text += ", " + (p.stage === "upload" ? "uploaded" : "ready") + " in about " + eta;
    }
    return text + ")";
  }

  function follow(row, id, auth) {
    // `no-cache` revalidates with If-None-Match: unchanged records cost a 304.
    fetch("/v1/uploads/" + encodeURIComponent(id), { headers: auth, cache: "no-cache" })
      .then(function (r) { if (!r.ok) throw new Error("status API answered " + r.status); return r.json(); })
      .then(function (record) {
        var outputs = record.outputs || {};
        if (record.state === "ready") {
          row.setState("ready", "ready");
          play(row, outputs, true);
        } else if (record.state === "playable") {
          // The smallest rendition plays already; the others join the same master.
          row.setState("playable", "playable; still processing" + describe(record));
          play(row, outputs, false);
        } else if (record.state === "failed") {
          row.el.classList.add("failed");
          row.setState("failed", "processing failed: " + (record.error ? record.error.message : "unknown error"));
        } else {
          row.setState(record.state, record.state === "uploaded" ? "uploaded; waiting for processing" : record.state + describe(record));
        }
        if (outputs.storyboard && !row.storyboard) loadStoryboard(row, outputs.storyboard);
        if (!FINAL[record.state]) setTimeout(follow, POLL_MS, row, id, auth);
      })
      .catch(function () { setTimeout(follow, POLL_MS * 2, row, id, auth); });
  }

  function play(row, outputs, complete) {
    if (!outputs.hls) { if (complete) row.setState("ready", "ready (no video output)"); return; }
    var video = row.q("video");
    if (row.hls && complete && !row.complete) {
      // Playing since `playable`: load the full master, so the larger renditions are used.
      var at = video.currentTime, paused = video.paused;
      row.hls.loadSource(outputs.hls);
      row.hls.once(Hls.Events.MANIFEST_PARSED, function () {
        video.currentTime = at;
        if (!paused) video.play();
      });
    }
    row.complete = complete;
    if (row.playing) return;
    row.playing = true;
    row.q(".player").hidden = false;
    if (outputs.poster) video.poster = outputs.poster;
    video.addEventListener("loadeddata", function () { row.el.dataset.player = "loaded"; });
    if (window.Hls && Hls.isSupported()) {
      var hls = row.hls = new Hls();
      hls.on(Hls.Events.MANIFEST_PARSED, function () { row.el.dataset.player = row.el.dataset.player || "manifest"; });
      hls.on(Hls.Events.ERROR, function (_, data) { if (data.fatal) row.el.dataset.player = "error: " + data.details; });
      hls.loadSource(outputs.hls);
      hls.attachMedia(video);
    } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
      video.src = outputs.hls;  // Safari plays HLS natively
    }
  }

  // -- storyboard: a thumbnail over the timeline while the pointer moves along it -------------------
  function loadStoryboard(row, url) {
    row.storyboard = [];
    url = new URL(url, location.href).href;  // outputs may be relative to the service
    fetch(url).then(function (r) { return r.ok ? r.text() : ""; }).then(function (text) {
      var lines = text.split("\n");
      for (var i = 1; i < lines.length; i++) {
        var timing = lines[i - 1].split(" --> "), m = /^(.*)#xywh=(\d+),(\d+),(\d+),(\d+)$/.exec(lines[i].trim());
        if (timing.length !== 2 || !m) continue;
        row.storyboard.push({
          start: seconds(timing[0]), end: seconds(timing[1]),
          src: new URL(m[1], url).href, x: +m[2], y: +m[3], w: +m[4], h: +m[5]
        });
      }
      row.el.dataset.storyboard = String(row.storyboard.length);
      var video = row.q("video"), preview = row.q(".preview");
      video.addEventListener("mousemove", function (e) {
        var box = video.getBoundingClientRect();
        // Native controls draw the timeline along the bottom: preview only there.
        if (!video.duration || e.clientY < box.bottom - 48) { preview.hidden = true; return; }
        showPreview(row, preview, video.duration * (e.clientX - box.left) / box.width, e.clientX - box.left);
      });
      video.addEventListener("mouseleave", function () { preview.hidden = true; });
    });
  }

  function showPreview(row, preview, t, x) {
    var cue = row.storyboard.filter(function (c) { return c.start <= t && t < c.end; })[0];
    if (!cue) { preview.hidden = true; return; }
    preview.hidden = false;
    preview.style.width = cue.w + "px";
    preview.style.height = cue.h + "px";
    preview.style.backgroundImage = "url(\"" + cue.src + "\")";
    preview.style.backgroundPosition = -cue.x + "px " + -cue.y + "px";
    preview.style.left = Math.max(0, x - cue.w / 2) + "px";
    row.el.dataset.preview = cue.x + "," + cue.y;
  }

  function seconds(stamp) {
    var parts = stamp.trim().split(":").map(Number);
    return parts.reduce(function (total, part) { return total * 60 + part; }, 0);
  }

  // -- unfinished uploads from earlier visits ------------------------------------------------------
  function refreshUnfinished() {
    tus.defaultOptions.urlStorage.findAllUploads().then(function (all) {
      var list = document.getElementById("unfinished-list");
      list.textContent = "";
      all.forEach(function (u) {
        var li = document.createElement("li");
        var name = (u.metadata && u.metadata.filename) || "unnamed";
        li.textContent = name + " (" + bytes(u.size || 0) + "), started " + new Date(u.creationTime).toLocaleString();
        list.appendChild(li);
      });
      document.getElementById("unfinished").hidden = all.length === 0;
    });
  }

  // -- picking and dropping ---------------------------------------------------------------------
  var input = document.getElementById("files");
  var drop = document.getElementById("drop");
  input.addEventListener("change", function () {
    Array.prototype.forEach.call(input.files, addFile);
    input.value = "";
  });
  ["dragenter", "dragover"].forEach(function (type) {
    drop.addEventListener(type, function (e) { e.preventDefault(); drop.classList.add("over"); });
  });
  ["dragleave", "drop"].forEach(function (type) {
    drop.addEventListener(type, function (e) { e.preventDefault(); drop.classList.remove("over"); });
  });
  drop.addEventListener("drop", function (e) {
    Array.prototype.forEach.call(e.dataTransfer.files, addFile);
  });

  if (!window.tus || !tus.isSupported) {
    document.getElementById("drop").textContent = "tus-js-client did not load: run `npm ci` on the server.";
    return;
  }
  loadToken();
  refreshUnfinished();
})();
