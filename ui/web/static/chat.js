// wirechat web UI: live updates over Server-Sent Events, replies, scrollback and deletion
// without a reload. Every name and message is written with textContent (never innerHTML):
// data is never markup. Times arrive formatted by the gateway (ui/timefmt.py, the console's
// format too) in the reader's time zone, which this script tells it in the "tz" cookie.
"use strict";

(function () {
  const body = document.body;
  const csrf = body.dataset.csrf;
  const me = body.dataset.me || "";
  let cid = Number(body.dataset.cid || 0); // the conversation on screen (0: none yet)
  const peerKey = body.dataset.peer || ""; // its other participants, "kim,lee"
  const baseTitle = body.dataset.title || document.title;
  const thread = document.getElementById("messages");
  const conversations = document.getElementById("conversations");

  // The gateway formats times in the zone named by this cookie (UTC until it is set).
  try {
    const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (zone && body.dataset.tz !== zone) {
      const secure = location.protocol === "https:" ? "; Secure" : "";  // over HTTPS, never sent in clear
      document.cookie = "tz=" + encodeURIComponent(zone) + "; path=/; SameSite=Lax; max-age=31536000" + secure;
    }
  } catch (e) { /* no Intl: UTC it is */ }

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
    const li = el("li", "msg " + (m.mine ? "out" : "in") + (m.sender_deleted ? " from-deleted" : ""));
    li.dataset.id = String(m.id);
    li.dataset.day = m.day;
    const meta = el("div", "meta");
    meta.appendChild(el("span", "who", m.who));
    if (m.to) meta.appendChild(el("span", "to", m.to));
    const time = el("time", "", m.time);
    time.title = m.stamp;
    meta.appendChild(time);
    meta.appendChild(renderActions(m));
    li.appendChild(meta);
    li.appendChild(linkify(el("div", "body"), m.body));
    return li;
  }

  // Text with its http(s) URLs as links (mirrors ui/web/links.py): every piece is a text
  // node, a link's text is its URL, and no scheme but http and https is ever linked.
  const URL_RE = /\bhttps?:\/\/[^\s<>"'`]+/gi;
  const TRAILING = ".,;:!?)]}";
  function linkify(node, text) {
    let last = 0;
    for (const match of text.matchAll(URL_RE)) {
      let url = match[0];
      while (url && TRAILING.includes(url[url.length - 1]) &&
             !(url.endsWith(")") && url.split("(").length >= url.split(")").length)) {
        url = url.slice(0, -1);
      }
      let parsed = null;
      try { parsed = new URL(url); } catch (e) { parsed = null; }
      if (!parsed || (parsed.protocol !== "http:" && parsed.protocol !== "https:")) continue;
      node.appendChild(document.createTextNode(text.slice(last, match.index)));
      const a = el("a", "", url);
      a.href = parsed.href;
      a.rel = "noopener noreferrer nofollow";
      a.target = "_blank";
      node.appendChild(a);
      last = match.index + url.length;
    }
    node.appendChild(document.createTextNode(text.slice(last)));
    return node;
  }

  function renderActions(m) {
    const details = el("details", "actions");
    const summary = el("summary", "", "\u22ee");
    summary.title = "Delete";
    summary.setAttribute("aria-label", "Delete this message");
    details.appendChild(summary);
    const form = el("form", "delete");
    form.method = "post";
    form.action = "/delete";
    [["csrf", csrf], ["id", String(m.id)], ["c", String(m.cid)]].forEach(function (pair) {
      const input = el("input");
      input.type = "hidden";
      input.name = pair[0];
      input.value = pair[1];
      form.appendChild(input);
    });
    form.appendChild(scopeButton("me", "Delete for me", "link-button"));
    if (m.mine) form.appendChild(scopeButton("everyone", "Delete for everyone", "link-button danger-text"));
    details.appendChild(form);
    return details;
  }

  function scopeButton(value, text, className) {
    const button = el("button", className, text);
    button.type = "submit";
    button.name = "scope";
    button.value = value;
    return button;
  }

  function daySeparator(m) {
    const li = el("li", "day", m.day_label);
    li.dataset.day = m.day;
    return li;
  }

  function belongsHere(m) {
    if (!thread) return false;
    if (cid && m.cid) return m.cid === cid;
    if (m.participants.slice().sort().join(",") !== peerKey) return false;
    if (m.cid) { // the first message of a new conversation: now we know its id
      cid = m.cid;
      body.dataset.cid = String(cid);
      const field = document.querySelector('#reply input[name="c"]');
      if (field) field.value = String(cid);
    }
    return true;
  }

  function lastDay() {
    const msgs = thread.querySelectorAll("li.msg");
    return msgs.length ? msgs[msgs.length - 1].dataset.day : null;
  }

  function showMessage(m) {
    if (!belongsHere(m)) return;
    if (thread.querySelector('li.msg[data-id="' + m.id + '"]')) return; // already on the page
    const stick = nearBottom(thread) || m.mine;
    if (lastDay() !== m.day) thread.appendChild(daySeparator(m));
    thread.appendChild(renderMessage(m));
    const empty = document.getElementById("no-messages");
    if (empty) empty.hidden = true;
    if (stick) thread.scrollTop = thread.scrollHeight;
    if (!m.mine && document.visibilityState === "visible") markRead(m.id);
  }

  // Day separators left with no message under them go (after a deletion).
  function tidyDays() {
    if (!thread) return;
    thread.querySelectorAll("li.day").forEach(function (day) {
      const next = day.nextElementSibling;
      if (!next || !next.classList.contains("msg")) day.remove();
    });
    const empty = document.getElementById("no-messages");
    if (empty) empty.hidden = thread.querySelector("li.msg") !== null;
  }

  function removeMessages(ids) {
    if (!thread) return;
    ids.forEach(function (id) {
      const li = thread.querySelector('li.msg[data-id="' + id + '"]');
      if (li) li.remove();
    });
    tidyDays();
  }

  // -- "Load older": the server's history, one page further back ------------------------------
  const older = document.getElementById("load-older");
  if (older) {
    older.addEventListener("click", function (event) {
      event.preventDefault();
      if (older.dataset.busy) return;
      older.dataset.busy = "1";
      const url = "/history?c=" + cid + "&before=" + encodeURIComponent(older.dataset.before);
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) { return response.json(); })
        .then(function (answer) {
          if (!answer.ok) throw new Error(answer.error);
          prependOlder(answer.messages);
          if (answer.messages.length) older.dataset.before = String(answer.messages[0].id);
          if (!answer.more) document.getElementById("older").remove();
        })
        .catch(function () { older.textContent = "Could not load older messages; try again"; })
        .finally(function () { delete older.dataset.busy; });
    });
  }

  function prependOlder(messages) {
    const holder = document.getElementById("older");
    const anchor = holder ? holder.nextElementSibling : thread.firstElementChild;
    const before = thread.scrollHeight;
    let day = null;
    messages.forEach(function (m) {
      if (thread.querySelector('li.msg[data-id="' + m.id + '"]')) return;
      if (m.day !== day) thread.insertBefore(daySeparator(m), anchor);
      day = m.day;
      thread.insertBefore(renderMessage(m), anchor);
    });
    // The old first separator repeats the day the batch ended with: keep one.
    if (anchor && anchor.classList.contains("day") && anchor.dataset.day === day) anchor.remove();
    thread.scrollTop += thread.scrollHeight - before; // keep what was on screen in place
  }

  // -- the sidebar: the server's conversation list, replaced as a whole --------------------
  function showConversations(list) {
    const badge = document.getElementById("unread-total");
    if (badge) badge.textContent = list.total ? String(list.total) : "";
    document.title = (list.total ? "(" + list.total + ") " : "") + baseTitle;
    if (!conversations) return;
    const rows = list.rows.map(function (c) {
      const li = el("li");
      li.dataset.cid = String(c.cid);
      li.dataset.peer = c.peer;
      if (c.cid === cid) li.className = "current";
      const a = el("a");
      a.href = "/chat?c=" + c.cid;
      a.appendChild(el("span", "peer-name", c.label));
      if (c.group) {
        const mark = el("span", "group-mark", "group");
        mark.title = "group";
        a.appendChild(mark);
      }
      a.appendChild(el("span", "badge", c.unread ? String(c.unread) : ""));
      a.appendChild(el("span", "preview", c.preview));
      li.appendChild(a);
      return li;
    });
    conversations.replaceChildren.apply(conversations, rows);
    const empty = document.getElementById("no-conversations");
    if (empty) empty.hidden = rows.length > 0;
  }

  let readUpTo = 0;
  function markRead(id) {
    if (!cid || id <= readUpTo) return;
    readUpTo = id;
    const data = new FormData();
    data.append("c", String(cid));
    data.append("up_to", String(id));
    post("/read", data);
  }
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState !== "visible" || !thread) return;
    const msgs = thread.querySelectorAll("li.msg.in");
    if (msgs.length) markRead(Number(msgs[msgs.length - 1].dataset.id));
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

  // -- deleting a message without a reload (the forms work without this script too) --------
  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (!form.classList || !form.classList.contains("delete")) return;
    event.preventDefault();
    const data = new FormData(form);
    if (event.submitter && event.submitter.name) data.append(event.submitter.name, event.submitter.value);
    post(form.action, data).then(function (response) {
      return response.json().then(function (answer) {
        if (answer.signed_out) signedOut(answer.error);
        else if (!answer.ok) window.alert(answer.error);
        // on success the server's "deleted" event removes it from every open page
      });
    });
  });

  // -- the live feed ------------------------------------------------------------------------
  if (body.dataset.events && window.EventSource) {
    const source = new EventSource(body.dataset.events);
    source.addEventListener("message", function (event) {
      showMessage(JSON.parse(event.data));
    });
    source.addEventListener("deleted", function (event) {
      removeMessages(JSON.parse(event.data).ids);
    });
    source.addEventListener("conversations", function (event) {
      showConversations(JSON.parse(event.data));
    });
    // The gateway's connection to the chat server (issue 13): "reconnecting..." stays up
    // while it lasts; "reconnected" shows for a few seconds. The page keeps what it shows;
    // messages that waited arrive as "message" events (the page drops ids it has already).
    const connection = document.getElementById("connection");
    let hideConnection = null;
    source.addEventListener("status", function (event) {
      const status = JSON.parse(event.data);
      if (!connection) return;
      clearTimeout(hideConnection);
      connection.textContent = status.text;
      connection.className = "connection " + status.state;
      connection.hidden = false;
      if (status.state === "resumed") {
        hideConnection = setTimeout(function () { connection.hidden = true; }, 5000);
      }
    });
    source.addEventListener("reload", function () {
      source.close(); // this page missed more than the gateway keeps: read it afresh
      window.location.reload();
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
    const hint = document.getElementById("reply-hint");
    if (hint) hint.hidden = false; // only with this script does Enter send
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
