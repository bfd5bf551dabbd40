// The MLAX console's only script: progress of evidence uploads and downloads.
// Pages work without it (plain forms); with it, transfers show a progress bar, an
// interrupted upload offers Resume, and a download shows its verified SHA-256.
// Served from 'self' under a strict CSP: no inline script, no eval, text set with
// textContent only (never innerHTML), so nothing from a peer is parsed as markup.
(function () {
  "use strict";

  function csrf() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  function say(output, text) {
    if (output) { output.textContent = text; }
  }

  function percent(done, total) {
    return total > 0 ? Math.floor((100 * done) / total) + "%" : done + " bytes";
  }

  function poll(job, update) {
    return new Promise(function (resolve, reject) {
      function tick() {
        fetch("/transfers/" + encodeURIComponent(job), {
          headers: { "Accept": "application/json" },
          credentials: "same-origin",
        }).then(function (r) {
          if (!r.ok) { throw new Error("The console lost track of this transfer (" + r.status + ")."); }
          return r.json();
        }).then(function (s) {
          update(s);
          if (s.state === "done" || s.state === "failed" || s.state === "interrupted") {
            resolve(s);
          } else {
            window.setTimeout(tick, 300);
          }
        }).catch(reject);
      }
      tick();
    });
  }

  function resumeButton(form, output, bar, job) {
    var button = document.createElement("button");
    button.type = "button";
    button.textContent = "Resume upload";
    button.addEventListener("click", function () {
      button.remove();
      fetch("/transfers/" + encodeURIComponent(job) + "/resume", {
        method: "POST",
        headers: { "X-CSRF-Token": csrf(), "Accept": "application/json" },
        credentials: "same-origin",
      }).then(function (r) { return r.json(); })
        .then(function () { follow(form, output, bar, job); })
        .catch(function (e) { say(output, e.message); });
    });
    form.appendChild(button);
    button.focus();
  }

  function follow(form, output, bar, job) {
    poll(job, function (s) {
      bar.max = s.total || 1;
      bar.value = s.done;
      say(output, "Sending to your node: " + percent(s.done, s.total));
    }).then(function (s) {
      if (s.state === "done") {
        bar.value = bar.max;
        say(output, "Uploaded " + s.name + " as " + s.attachment_id + ".");
        window.location.reload();
      } else if (s.state === "interrupted") {
        say(output, s.error + " The upload can go on from where the node stopped.");
        resumeButton(form, output, bar, job);
      } else {
        say(output, s.error || "The upload failed.");
      }
    }).catch(function (e) { say(output, e.message); });
  }

  function upload(form) {
    var input = form.querySelector('input[type="file"]');
    var description = form.querySelector('input[name="description"]');
    var bar = form.querySelector("progress");
    var output = form.querySelector("output");
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var file = input && input.files && input.files[0];
      if (!file) { say(output, "Choose a file first."); return; }
      var xhr = new XMLHttpRequest();
      xhr.open("POST", form.getAttribute("action"));
      xhr.setRequestHeader("X-CSRF-Token", csrf());
      xhr.setRequestHeader("Accept", "application/json");
      xhr.setRequestHeader("Content-Type", "application/octet-stream");
      xhr.setRequestHeader("X-File-Name", encodeURIComponent(file.name));
      xhr.setRequestHeader("X-Description", encodeURIComponent(description ? description.value : ""));
      bar.hidden = false;
      bar.max = file.size || 1;
      bar.value = 0;
      xhr.upload.addEventListener("progress", function (e) {
        bar.value = e.loaded;
        say(output, "Copying to the console: " + percent(e.loaded, file.size));
      });
      xhr.addEventListener("load", function () {
        var body = {};
        try { body = JSON.parse(xhr.responseText); } catch (ignored) { body = {}; }
        if (xhr.status === 202 && body.job) {
          follow(form, output, bar, body.job);
        } else {
          say(output, xhr.responseText.trim() || "The console refused the file (" + xhr.status + ").");
        }
      });
      xhr.addEventListener("error", function () {
        say(output, "The connection to the console dropped; choose Upload again.");
      });
      xhr.send(file);
    });
  }

  function download(form) {
    var bar = form.querySelector("progress");
    var output = form.querySelector("output");
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var button = form.querySelector("button");
      if (button) { button.disabled = true; }
      fetch(form.getAttribute("action"), {
        method: "POST",
        headers: { "X-CSRF-Token": csrf(), "Accept": "application/json" },
        credentials: "same-origin",
      }).then(function (r) {
        if (r.status !== 202) {
          return r.text().then(function (t) { throw new Error(t.trim() || ("Refused (" + r.status + ")")); });
        }
        return r.json();
      }).then(function (started) {
        bar.hidden = false;
        return poll(started.job, function (s) {
          bar.max = s.total || 1;
          bar.value = s.done;
          say(output, "Downloading from your node: " + percent(s.done, s.total));
        });
      }).then(function (s) {
        if (button) { button.disabled = false; }
        if (s.state !== "done") { say(output, s.error || "The download failed."); return; }
        bar.value = bar.max;
        say(output, "");
        var verified = document.createElement("span");
        verified.className = "digest-verified";
        verified.textContent = "SHA-256 " + s.sha256 + " verified against the signed digest. ";
        var link = document.createElement("a");
        link.href = "/transfers/" + encodeURIComponent(s.job) + "/file";
        link.setAttribute("download", "");
        link.textContent = "Save " + s.name;
        output.appendChild(verified);
        output.appendChild(link);
        link.focus();
      }).catch(function (e) {
        if (button) { button.disabled = false; }
        say(output, e.message);
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("form.upload").forEach(upload);
    document.querySelectorAll("form.download-form").forEach(download);
  });
})();
