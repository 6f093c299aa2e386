// glmctl console: the only script. Everything works without it; with it,
// actions are confirmed in a dialog instead of a confirmation page, the
// sections marked data-part refresh themselves from /live, and a followed
// log streams from /live/logs. No inline script, no eval, no third party.
"use strict";

(function () {
  var POLL_MS = 3000;
  var MAX_LOG_LINES = 3000;

  function status(text) {
    var el = document.getElementById("live-status");
    if (!el) { return; }
    el.textContent = text;
    el.hidden = !text;
  }

  // --- confirmation dialog -------------------------------------------------
  function setupConfirm() {
    var dialog = document.getElementById("confirm-dialog");
    if (!dialog || typeof dialog.showModal !== "function") {
      return; // no <dialog>: the server's confirmation page does the job
    }
    var form = document.getElementById("confirm-form");
    var question = document.getElementById("confirm-question");
    var fields = document.getElementById("confirm-fields");
    document.getElementById("confirm-cancel").addEventListener("click", function () {
      dialog.close();
    });
    document.addEventListener("submit", function (ev) {
      var src = ev.target;
      if (src === form || !src.hasAttribute("data-confirm")) {
        return;
      }
      ev.preventDefault();
      question.textContent = src.getAttribute("data-confirm");
      form.setAttribute("action", src.getAttribute("action"));
      while (fields.firstChild) { fields.removeChild(fields.firstChild); }
      // The section behind the dialog may be refreshed while it is open, so
      // the values are copied now, not read from the original form later.
      Array.prototype.forEach.call(src.elements, function (el) {
        if (!el.name || el.type === "submit" || el.type === "button") { return; }
        var input = document.createElement("input");
        input.type = "hidden";
        input.name = el.name;
        input.value = el.value;
        fields.appendChild(input);
      });
      var c = document.createElement("input");
      c.type = "hidden";
      c.name = "confirm";
      c.value = "yes";
      fields.appendChild(c);
      dialog.showModal();
      document.getElementById("confirm-ok").focus();
    });
  }

  // --- live sections -------------------------------------------------------
  function setupLive() {
    var sections = document.querySelectorAll("[data-part]");
    if (!sections.length || !window.fetch) { return; }
    var last = {};
    var busy = false;
    function poll() {
      if (busy || document.hidden) { return; }
      busy = true;
      var q = Array.prototype.map.call(sections, function (s) {
        return "part=" + encodeURIComponent(s.getAttribute("data-part"));
      }).join("&");
      fetch("/live?" + q, { credentials: "same-origin", cache: "no-store" }).then(function (resp) {
        if (resp.status === 401) {
          window.location.assign("/login?why=expired");
          throw new Error("signed out");
        }
        if (!resp.ok) { throw new Error("HTTP " + resp.status); }
        return resp.json();
      }).then(function (data) {
        status("");
        Array.prototype.forEach.call(sections, function (s) {
          var name = s.getAttribute("data-part");
          var html = data.parts[name];
          if (typeof html === "string" && html !== last[name]) {
            last[name] = html;
            // Server-rendered by html/template, from this origin.
            s.innerHTML = html;
          }
        });
      }).catch(function (err) {
        if (String(err && err.message) !== "signed out") { status("offline — retrying"); }
      }).then(function () { busy = false; });
    }
    window.setInterval(poll, POLL_MS);
    document.addEventListener("visibilitychange", poll);
  }

  // --- log follow ----------------------------------------------------------
  function setupFollow() {
    var pre = document.getElementById("log");
    if (!pre || !pre.hasAttribute("data-follow") || !window.EventSource) { return; }
    var program = pre.getAttribute("data-follow");
    var es = new EventSource("/live/logs?program=" + encodeURIComponent(program));
    var empty = document.getElementById("log-empty");
    status("following " + program);
    es.onmessage = function (ev) {
      var atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
      pre.appendChild(document.createTextNode(ev.data + "\n"));
      while (pre.childNodes.length > MAX_LOG_LINES) { pre.removeChild(pre.firstChild); }
      if (empty) { empty.remove(); empty = null; }
      if (atBottom) { pre.scrollTop = pre.scrollHeight; }
    };
    es.addEventListener("end", function (ev) {
      es.close();
      status(ev.data === "signed out" ? "signed out" : "stream ended");
    });
    es.onerror = function () { status("log stream interrupted — reconnecting"); };
    es.onopen = function () { status("following " + program); };
    pre.scrollTop = pre.scrollHeight;
  }

  function start() {
    setupConfirm();
    setupLive();
    setupFollow();
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
