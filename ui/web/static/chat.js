// wirechat web UI: live updates over Server-Sent Events, replies without a reload.
// Every name and message is written with textContent (never innerHTML): data is never markup.
"use strict";

(function () {
  const body = document.body;
  const csrf = body.dataset.csrf;
  const me = body.dataset.me || "";
  const peer = body.dataset.peer || "";
  const baseTitle = body.dataset.title || document.title;
  const thread = document.getElementById("messages");
  const conversations = document.getElementById("conversations");

  // Times arrive in UTC from the server; show them in the reader's time zone.
  function localTime(ms) {
    return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }
  document.querySelectorAll("time[data-ms]").forEach(function (el) {
    el.textContent = localTime(Number(el.dataset.ms));
  });

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function nearBottom(box) {
    return box.scrollHeight - box.scrollTop - box.clientHeight < 80;
  }
  if (thread) thread.scrollTop = thread.scrollHeight;

  function post(url, data) {
    return fetch(url, {
      method: "POST",
      body: data,
      credentials: "same-origin",
      headers: { "X-CSRF-Token": csrf, Accept: "application/json" },
    });
  }

  // -- rendering one message (mirrors templates/_message.html) --------------------------------
  function renderMessage(m) {
    const mine = m.sender === me;
    const li = el("li", "msg " + (mine ? "out" : "in"));
    li.dataset.seq = String(m.seq);
    const meta = el("div", "meta");
    meta.appendChild(el("span", "who", mine ? "You" : m.sender));
    if (!m.incoming && m.recipients.length > 1) {
      meta.appendChild(el("span", "to", "to " + m.recipients.join(", ")));
    }
    const time = el("time", "", localTime(m.sent_at_ms));
    time.dateTime = new Date(m.sent_at_ms).toISOString();
    meta.appendChild(time);
    li.appendChild(meta);
    li.appendChild(el("div", "body", m.body));
    return li;
  }

  function showMessage(m) {
    if (!thread || m.peers.indexOf(peer) < 0) return;
    if (thread.querySelector('li[data-seq="' + m.seq + '"]')) return; // already on the page
    const stick = nearBottom(thread) || m.sender === me;
    thread.appendChild(renderMessage(m));
    const empty = document.getElementById("no-messages");
    if (empty) empty.hidden = true;
    if (stick) thread.scrollTop = thread.scrollHeight;
    if (m.incoming && m.sender === peer && document.visibilityState === "visible") markRead();
  }

  function conversationRow(name) {
    const found = conversations.querySelector('li[data-peer="' + CSS.escape(name) + '"]');
    if (found) return found;
    const li = el("li");
    li.dataset.peer = name;
    if (name === peer) li.className = "current";
    const a = el("a");
    a.href = "/chat?peer=" + encodeURIComponent(name);
    a.appendChild(el("span", "peer-name", name));
    a.appendChild(el("span", "badge", ""));
    a.appendChild(el("span", "preview", ""));
    li.appendChild(a);
    const empty = document.getElementById("no-conversations");
    if (empty) empty.hidden = true;
    return li;
  }

  function showInSidebar(m) {
    if (!conversations) return;
    m.peers.forEach(function (name) {
      const row = conversationRow(name);
      row.querySelector(".preview").textContent = m.body.slice(0, 80);
      conversations.insertBefore(row, conversations.firstChild); // most recent first
    });
  }

  function showUnread(counts) {
    let total = 0;
    Object.keys(counts).forEach(function (name) { total += counts[name]; });
    const badge = document.getElementById("unread-total");
    if (badge) badge.textContent = total ? String(total) : "";
    document.title = (total ? "(" + total + ") " : "") + baseTitle;
    if (!conversations) return;
    conversations.querySelectorAll("li[data-peer]").forEach(function (row) {
      const n = counts[row.dataset.peer] || 0;
      row.querySelector(".badge").textContent = n ? String(n) : "";
    });
  }

  let readPending = false;
  function markRead() {
    if (readPending || !peer) return;
    readPending = true;
    const data = new FormData();
    data.append("peer", peer);
    post("/read", data).finally(function () { readPending = false; });
  }
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState !== "visible" || !conversations) return;
    const row = conversations.querySelector('li[data-peer="' + CSS.escape(peer) + '"] .badge');
    if (row && row.textContent) markRead();
  });

  function signedOut(reason) {
    const banner = document.getElementById("banner");
    banner.textContent = "You were signed out: " + reason + ". ";
    const link = el("a", "", "Log in again");
    link.href = "/login";
    banner.appendChild(link);
    banner.hidden = false;
    document.querySelectorAll("form button, textarea").forEach(function (n) { n.disabled = true; });
    setTimeout(function () { window.location.assign("/login"); }, 1000);
  }

  // -- the live feed ------------------------------------------------------------------------
  if (body.dataset.events && window.EventSource) {
    const source = new EventSource(body.dataset.events);
    source.addEventListener("message", function (event) {
      const m = JSON.parse(event.data);
      showMessage(m);
      showInSidebar(m);
    });
    source.addEventListener("unread", function (event) {
      showUnread(JSON.parse(event.data));
    });
    source.addEventListener("replaced", function () {
      source.close(); // too many open pages: stop here rather than take another's place
      const banner = document.getElementById("banner");
      banner.textContent = "Live updates stopped in this tab: the chat is open in too many " +
        "tabs. Reload the page to resume.";
      banner.hidden = false;
    });
    source.addEventListener("end", function (event) {
      source.close();
      signedOut(JSON.parse(event.data).reason);
    });
    window.addEventListener("pagehide", function () { source.close(); });
  }

  // -- replying without a reload (the form still works without this script) -----------------
  const reply = document.getElementById("reply");
  if (reply) {
    const box = reply.querySelector("textarea");
    const error = reply.querySelector(".form-error");
    box.focus();
    box.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        reply.requestSubmit();
      }
    });
    reply.addEventListener("submit", function (event) {
      event.preventDefault();
      if (!box.value.trim()) return;
      const button = reply.querySelector("button");
      button.disabled = true;
      error.textContent = "";
      post(reply.action, new FormData(reply))
        .then(function (response) {
          return response.json().then(function (answer) {
            if (answer.signed_out) {
              signedOut(answer.error);
            } else if (!answer.ok) {
              error.textContent = answer.error;
            } else {
              box.value = "";
              if (answer.unknown.length) {
                error.textContent = "Not delivered, no such user: " + answer.unknown.join(", ");
              }
            }
          });
        })
        .catch(function () { error.textContent = "The web gateway did not answer; try again."; })
        .finally(function () { button.disabled = false; box.focus(); });
    });
  }
})();
