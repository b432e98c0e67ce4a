/*
 * pyhub_ai chat client: implements docs/protocol.md (version 1) for the page rendered by
 * pyhub_ai/chat_room_ws.html. Every visible string comes from #pyhub-chat-i18n (translated
 * by the template). Model output is rendered with PyhubMarkdown; everything else is text.
 */
(function () {
  "use strict";

  var PROTOCOL = 1;
  var MAX_RETRY_DELAY = 15000;
  var NEAR_BOTTOM_PX = 80;
  var NEAR_TOP_PX = 40;
  var MAX_INPUT_HEIGHT_PX = 192;
  var COUNTER_FROM = 0.8;
  var COPIED_MS = 2000;
  var REFUSALS = { 4401: "unauthorized", 4403: "forbidden" };
  var ROLE_LABELS = { human: "roleHuman", ai: "roleAi", tool: "roleTool", system: "roleSystem" };
  var STATUS_LABELS = { error: "failed", interrupted: "interrupted" };

  var root = null;
  var els = {};
  var strings = {};
  var socket = null;
  var retries = 0;
  var everConnected = false; // a welcome came once: later drops are "connection lost", not "unreachable"
  var retryTimer = null;
  var stopped = false; // refused or outdated: never reconnect on our own
  var ready = false; // welcome received on the current socket
  var maxLength = 0;
  var freshHistory = false; // the next history frame replaces the list
  var hasMore = false;
  var loadingMore = false;
  var awaitingReply = false; // user_message sent, reply not started yet
  var expectFirstTurn = false; // empty thread: the server may start the first turn itself
  var pending = null; // {text, key, attachments}: a user_message not yet echoed; resent (same key) on reconnect
  var queued = null; // {text, el}: written while a reply ran (or before connecting); sent when it ends
  var stopRequested = false; // Stop pressed before our reply started streaming
  var stream = null; // {turnId, el, text, frame, own, stopping}
  var toolTurn = null; // {turnId, own}: between a tool_call and the model's next step
  var sticky = true; // follow new content (the reader has not scrolled up)
  var lastScrollTop = 0;
  var composing = false;
  var typingEl = null;
  var target = null; // {id, switched}: the message of the page's #message-<id>, sought after connecting
  var attached = []; // {id, name, el}: files uploaded for the next message (id null while uploading)
  var approval = null; // {frame, el, decisions, sent}: tool calls the thread's graph waits to have approved

  // ---- helpers -------------------------------------------------------------------------

  function t(key, vars) {
    return (strings[key] || "").replace(/\{(\w+)\}/g, function (m, name) {
      return vars && Object.prototype.hasOwnProperty.call(vars, name) ? String(vars[name]) : m;
    });
  }

  function make(tag, className, content) {
    var el = document.createElement(tag);
    if (className) {
      el.className = className;
    }
    if (content != null) {
      el.textContent = content;
    }
    return el;
  }

  function button(className, label) {
    var el = make("button", className, label);
    el.type = "button";
    return el;
  }

  function byId(id) {
    return document.getElementById(id);
  }

  function socketUrl(raw) {
    if (/^wss?:\/\//i.test(raw)) {
      return raw;
    }
    var url = new URL(raw, window.location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    url.hash = "";
    return url.href;
  }

  function send(frame) {
    socket.send(JSON.stringify(frame));
  }

  function newKey() {
    if (window.crypto && crypto.randomUUID) {
      return crypto.randomUUID();
    }
    return Date.now().toString(36) + "-" + Math.random().toString(36).slice(2); // non-secure contexts
  }

  function charCount(value) {
    return Array.from(value).length; // code points, like Python's len()
  }

  function announce(message) {
    els.announce.textContent = "";
    setTimeout(function () {
      els.announce.textContent = message;
    }, 50);
  }

  // ---- rendering messages ----------------------------------------------------------------

  function buildMessage(message) {
    var role = Object.prototype.hasOwnProperty.call(ROLE_LABELS, message.role) ? message.role : "system";
    var el = make("div", "pyhub-msg");
    el.dataset.role = role;
    el.dataset.status = message.status || "complete";
    if (message.id != null) {
      el.dataset.id = String(message.id);
    }
    if (message.turn_id) {
      el.dataset.turnId = message.turn_id;
    }
    if (Array.isArray(message.versions) && message.versions.length > 1) {
      el.dataset.versions = message.versions.join(",");
    }
    if (message.feedback && (message.feedback.rating === "up" || message.feedback.rating === "down")) {
      el.dataset.rating = message.feedback.rating;
      el.dataset.comment = String(message.feedback.comment || "");
    }
    el.appendChild(make("span", "pyhub-msg-role", t(ROLE_LABELS[role])));
    el.appendChild(role === "tool" ? toolResult(message) : messageBody(role, message.text));
    if (role === "human" && Array.isArray(message.attachments) && message.attachments.length) {
      el.appendChild(attachmentList(message.attachments));
    }
    if (role === "tool" && message.artifact) {
      el.appendChild(artifact(message.artifact));
    }
    if (role === "ai" && Array.isArray(message.tool_calls) && message.tool_calls.length) {
      el.appendChild(toolCalls(message.tool_calls));
    }
    if (STATUS_LABELS[el.dataset.status]) {
      el.appendChild(make("p", "pyhub-msg-status", t(STATUS_LABELS[el.dataset.status])));
    }
    return el;
  }

  function renderMarkdown(body, text) {
    body.innerHTML = window.PyhubMarkdown.render(text || "");
    Array.prototype.forEach.call(body.querySelectorAll("pre"), decorateCode);
  }

  function messageBody(role, value) {
    var body = make("div", "pyhub-msg-body");
    if (role === "ai") {
      renderMarkdown(body, value);
    } else {
      body.textContent = value || "";
    }
    return body;
  }

  // A code block gets a bar with its language and a copy button.
  function decorateCode(pre) {
    var code = pre.querySelector("code");
    var lang = code && /(?:^|\s)language-(\S+)/.exec(code.className);
    var box = make("div", "pyhub-code");
    var bar = make("div", "pyhub-code-bar");
    bar.appendChild(make("span", "pyhub-code-lang", lang ? lang[1] : ""));
    var copy = button("pyhub-code-copy", t("copy"));
    copy.setAttribute("aria-label", t("copyCode"));
    copy.addEventListener("click", function () {
      copyText(pre.textContent, copy);
    });
    bar.appendChild(copy);
    pre.replaceWith(box);
    box.appendChild(bar);
    box.appendChild(pre);
  }

  function copyText(text, copy) {
    function done() {
      copy.textContent = t("copied");
      copy.dataset.copied = "true";
      announce(t("copied"));
      setTimeout(function () {
        copy.textContent = t("copy");
        delete copy.dataset.copied;
      }, COPIED_MS);
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () {
        fallbackCopy(text, copy) && done();
      });
    } else if (fallbackCopy(text, copy)) {
      done();
    }
  }

  function fallbackCopy(text, copy) {
    var area = make("textarea", "pyhub-visually-hidden");
    area.value = text;
    area.setAttribute("readonly", "");
    document.body.appendChild(area);
    area.select();
    var ok = false;
    try {
      ok = document.execCommand("copy");
    } catch (e) {
      ok = false;
    }
    area.remove();
    copy.focus();
    return ok;
  }

  function toolResult(message) {
    var details = make("details", "pyhub-msg-tool");
    var label = t(message.tool_status === "error" ? "toolFailed" : "toolResult", { name: message.name || "" });
    details.appendChild(make("summary", null, label));
    details.appendChild(make("pre", "pyhub-msg-body", message.text || ""));
    return details;
  }

  // A tool's image (a site or http(s) URL only) or table, built as DOM nodes (never HTML).
  function artifact(data) {
    var box = make("div", "pyhub-msg-artifact");
    if (data.type === "image" && /^(https?:\/\/|\/(?!\/))/i.test(String(data.url || ""))) {
      var img = make("img");
      img.src = data.url;
      img.alt = data.alt || "";
      img.loading = "lazy";
      img.addEventListener("load", function () {
        if (sticky) {
          scrollToBottom(); // a chart that loads after the page scrolled down would push the end away
        }
      });
      box.appendChild(img);
    } else if (data.type === "table" && Array.isArray(data.columns) && Array.isArray(data.rows)) {
      var table = make("table");
      var head = table.createTHead().insertRow();
      data.columns.forEach(function (name) {
        head.appendChild(make("th", null, String(name))).scope = "col";
      });
      var body = table.createTBody();
      data.rows.forEach(function (row) {
        var tr = body.insertRow();
        (Array.isArray(row) ? row : []).forEach(function (value) {
          tr.insertCell().textContent = value == null ? "" : String(value);
        });
      });
      if (data.total_rows > data.rows.length) {
        table.createCaption().textContent = t("tableRows", { shown: data.rows.length, total: data.total_rows });
      }
      box.appendChild(table);
    }
    return box;
  }

  // A user's files: images as thumbnails, other files as links (site URLs only, built as DOM).
  function attachmentList(files) {
    var box = make("div", "pyhub-msg-files");
    files.forEach(function (file) {
      var url = String(file.url || "");
      if (!/^\/(?!\/)/.test(url)) {
        box.appendChild(make("span", "pyhub-msg-file", String(file.name || "")));
        return;
      }
      var link = make("a", "pyhub-msg-file");
      link.href = url;
      link.target = "_blank";
      link.rel = "noopener";
      if (/^image\//.test(String(file.type || ""))) {
        var img = make("img");
        img.src = url;
        img.alt = String(file.name || "");
        img.loading = "lazy";
        img.addEventListener("load", function () {
          if (sticky) {
            scrollToBottom();
          }
        });
        link.appendChild(img);
      } else {
        link.textContent = String(file.name || "");
      }
      box.appendChild(link);
    });
    return box;
  }

  function toolCalls(calls) {
    var list = make("ul", "pyhub-msg-tool-calls");
    calls.forEach(function (call) {
      var item = make("li", "pyhub-msg-tool-call");
      item.appendChild(make("span", "pyhub-msg-tool-name", t("toolCall", { name: call.name || "" })));
      item.appendChild(make("code", "pyhub-msg-tool-args", JSON.stringify(call.args || {})));
      list.appendChild(item);
    });
    return list;
  }

  function typingIndicator() {
    var el = make("span", "pyhub-typing");
    el.appendChild(make("span", "pyhub-visually-hidden", t("typing")));
    for (var i = 0; i < 3; i += 1) {
      el.appendChild(make("span", "pyhub-typing-dot")).setAttribute("aria-hidden", "true");
    }
    return el;
  }

  // The "typing" bubble shown between sending a message and the first streamed token.
  function showTyping(show) {
    if (show && !typingEl) {
      typingEl = make("div", "pyhub-pending");
      typingEl.appendChild(typingIndicator());
      withAutoScroll(function () {
        els.messages.insertBefore(typingEl, queuedEl());
      });
    } else if (!show && typingEl) {
      typingEl.remove();
      typingEl = null;
    }
  }

  function findMessage(id) {
    return els.messages.querySelector('.pyhub-msg[data-id="' + CSS.escape(String(id)) + '"]');
  }

  function oldestId() {
    var first = els.messages.querySelector(".pyhub-msg[data-id]");
    return first ? Number(first.dataset.id) : null;
  }

  // ---- actions on a message: edit, regenerate, retry, versions ---------------------------

  // The user's message a reply answers: of its turn, or (rows stored without one) the one above it.
  function humanOfTurn(el) {
    if (el.dataset.turnId) {
      return els.messages.querySelector(
        '.pyhub-msg[data-role="human"][data-id][data-turn-id="' + CSS.escape(el.dataset.turnId) + '"]'
      );
    }
    var above = el.previousElementSibling;
    while (above && above.dataset.role !== "human") {
      above = above.previousElementSibling;
    }
    return above && above.dataset.id ? above : null;
  }

  // The last message of its turn on the page (the reply that Regenerate and Retry replace).
  function endsTurn(el) {
    var next = el.nextElementSibling;
    return !next || !next.dataset.turnId || next.dataset.turnId !== el.dataset.turnId;
  }

  // Adds the buttons a message has, once: Edit on the user's messages; on the last reply of a
  // turn whose question is on the page (not the hidden conversation starter's), Regenerate, or
  // Retry when it failed and was not answered again yet; "‹ 2 / 3 ›" on a message with versions.
  function addActions() {
    Array.prototype.forEach.call(els.messages.querySelectorAll(".pyhub-msg[data-id]:not([data-actions])"), function (el) {
      el.dataset.actions = "true";
      var bar = make("div", "pyhub-msg-actions");
      var versions = el.dataset.versions ? el.dataset.versions.split(",") : [];
      if (versions.length > 1) {
        bar.appendChild(versionSwitch(el, versions));
      }
      var failed = el.dataset.status === "error" || el.dataset.status === "interrupted";
      if (el.dataset.role === "human" && el.dataset.status === "complete") {
        bar.appendChild(actionButton("pyhub-msg-edit", t("edit"), function () {
          startEditing(el);
        }));
      } else if (el.dataset.role === "ai" && el.dataset.status !== "streaming" && !el.querySelector(".pyhub-msg-tool-calls") &&
                 endsTurn(el) && humanOfTurn(el)) {
        if (failed && versions.length < 2) {
          el.dataset.retry = "true";
          bar.appendChild(actionButton("pyhub-msg-retry", t("retry"), function () {
            regenerate(el);
          }));
        } else if (!failed) {
          bar.appendChild(actionButton("pyhub-msg-regenerate", t("regenerate"), function () {
            regenerate(el);
          }));
        }
      }
      if (el.dataset.role === "ai" && el.dataset.status !== "streaming" &&
          !(el.querySelector(".pyhub-msg-tool-calls") && !el.querySelector(".pyhub-msg-body").textContent.trim())) {
        bar.appendChild(feedbackButtons(el));
      }
      if (bar.firstChild) {
        el.appendChild(bar);
      }
      if (el.dataset.rating) {
        showFeedback(el);
      }
    });
    refreshActions();
  }

  // ---- feedback: thumbs up or down, and a comment ----------------------------------------

  function feedbackButtons(el) {
    var box = make("span", "pyhub-msg-feedback");
    box.setAttribute("role", "group");
    box.setAttribute("aria-label", t("feedback"));
    [["up", "thumbsUp"], ["down", "thumbsDown"]].forEach(function (spec) {
      var thumb = button("pyhub-msg-thumb"); // the thumb is drawn by CSS (a mask): no markup inside
      thumb.dataset.rating = spec[0];
      thumb.setAttribute("aria-label", t(spec[1]));
      thumb.setAttribute("aria-pressed", String(el.dataset.rating === spec[0]));
      thumb.addEventListener("click", function () {
        var again = el.dataset.rating === spec[0]; // pressing the chosen thumb takes it back
        sendFeedback(el, again ? null : spec[0], again ? "" : el.dataset.comment || "");
        if (!again) {
          openComment(el);
        }
      });
      box.appendChild(thumb);
    });
    return box;
  }

  function sendFeedback(el, rating, comment) {
    if (ready) {
      send({ type: "feedback", message_id: Number(el.dataset.id), rating: rating, comment: comment });
    }
  }

  // A comment box below a rated reply (the comment is optional).
  function openComment(el) {
    if (el.querySelector(".pyhub-msg-comment-form")) {
      return;
    }
    var parts = textForm("pyhub-msg-comment", el.dataset.comment || "", t("commentLabel"), t("saveComment"));
    var form = parts.form, area = parts.area, close = parts.cancel;
    area.rows = 2;
    area.maxLength = 2000;
    area.placeholder = t("commentPlaceholder");
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (el.dataset.rating) {
        sendFeedback(el, el.dataset.rating, area.value.trim());
      }
      form.remove();
    });
    close.addEventListener("click", function () {
      form.remove();
    });
    withAutoScroll(function () {
      el.appendChild(form);
    });
  }

  // Shows the stored feedback of a reply: the pressed thumb and the comment.
  function showFeedback(el) {
    Array.prototype.forEach.call(el.querySelectorAll(".pyhub-msg-thumb"), function (thumb) {
      thumb.setAttribute("aria-pressed", String(thumb.dataset.rating === el.dataset.rating));
    });
    var shown = el.querySelector(".pyhub-msg-comment");
    if (!el.dataset.comment) {
      if (shown) {
        shown.remove();
      }
      return;
    }
    if (!shown) {
      shown = make("p", "pyhub-msg-comment");
      el.querySelector(".pyhub-msg-actions").after(shown);
    }
    shown.textContent = t("yourComment", { comment: el.dataset.comment });
  }

  function onFeedback(frame) {
    var el = findMessage(frame.message_id);
    if (!el) {
      return;
    }
    if (frame.feedback) {
      el.dataset.rating = frame.feedback.rating;
      el.dataset.comment = String(frame.feedback.comment || "");
      announce(t(frame.feedback.rating === "up" ? "thumbsUp" : "thumbsDown"));
    } else {
      delete el.dataset.rating;
      delete el.dataset.comment;
      var form = el.querySelector(".pyhub-msg-comment-form");
      if (form) {
        form.remove();
      }
    }
    showFeedback(el);
  }

  function actionButton(className, label, onClick) {
    var el = button("pyhub-msg-action " + className, label);
    el.addEventListener("click", onClick);
    return el;
  }

  function versionSwitch(el, versions) {
    var index = versions.indexOf(el.dataset.id);
    var box = make("span", "pyhub-msg-versions");
    box.setAttribute("role", "group");
    box.setAttribute("aria-label", t("versions"));
    var previous = actionButton("pyhub-msg-version-prev", "‹", function () {
      switchTo(versions[index - 1]);
    });
    previous.setAttribute("aria-label", t("previousVersion"));
    previous.dataset.edge = String(index <= 0);
    var next = actionButton("pyhub-msg-version-next", "›", function () {
      switchTo(versions[index + 1]);
    });
    next.setAttribute("aria-label", t("nextVersion"));
    next.dataset.edge = String(index >= versions.length - 1);
    box.appendChild(previous);
    box.appendChild(make("span", "pyhub-msg-version", t("version", { index: index + 1, count: versions.length })));
    box.appendChild(next);
    return box;
  }

  // Action buttons work only while nothing runs (one turn at a time).
  function refreshActions() {
    Array.prototype.forEach.call(els.messages.querySelectorAll(".pyhub-msg-action"), function (action) {
      action.disabled = !canSend() || action.dataset.edge === "true";
    });
  }

  function switchTo(id) {
    if (canSend() && id) {
      send({ type: "switch_branch", message_id: Number(id) });
    }
  }

  function regenerate(el) {
    if (!canSend()) {
      return;
    }
    clearError();
    send({ type: "regenerate", message_id: Number(el.dataset.id) });
    awaitingReply = true;
    expectFirstTurn = false;
    refreshForm();
    els.input.focus();
  }

  // A form below a message: a text box, its submit button and Cancel (edits and comments).
  // Its parts are "<prefix>-form", "-input", "-save" and "-cancel".
  function textForm(prefix, value, label, saveLabel) {
    var form = make("form", "pyhub-msg-form " + prefix + "-form");
    var area = make("textarea", prefix + "-input");
    area.value = value;
    area.setAttribute("aria-label", label);
    var save = button(prefix + "-save", saveLabel);
    save.type = "submit";
    var cancel = button(prefix + "-cancel", t("cancelEdit"));
    form.appendChild(area);
    form.appendChild(save);
    form.appendChild(cancel);
    return { form: form, area: area, cancel: cancel };
  }

  // Replaces the message's text with a box to edit it; sending it stores a new version.
  function startEditing(el) {
    var body = el.querySelector(".pyhub-msg-body");
    if (!body || el.querySelector(".pyhub-msg-edit-form") || !canSend()) {
      return;
    }
    var parts = textForm("pyhub-msg-edit", body.textContent, t("editLabel"), t("saveEdit"));
    var editor = parts.form, area = parts.area, cancel = parts.cancel;
    area.rows = Math.min(8, area.value.split("\n").length + 1);
    body.hidden = true;
    el.dataset.editing = "true";
    body.after(editor);
    function close() {
      editor.remove();
      body.hidden = false;
      delete el.dataset.editing;
    }
    cancel.addEventListener("click", close);
    editor.addEventListener("submit", function (event) {
      event.preventDefault();
      var text = area.value;
      if (!text.trim() || isTooLong(text) || !canSend()) {
        return;
      }
      clearError();
      send({ type: "edit_message", message_id: Number(el.dataset.id), text: text, idempotency_key: newKey() });
      awaitingReply = true;
      expectFirstTurn = false;
      close();
      refreshForm();
      els.input.focus();
    });
    area.addEventListener("keydown", function (event) {
      if (event.key === "Escape") {
        event.preventDefault();
        event.stopPropagation();
        close();
      } else if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
        event.preventDefault();
        editor.requestSubmit();
      }
    });
    area.focus();
    area.setSelectionRange(area.value.length, area.value.length);
  }

  // ---- scrolling -------------------------------------------------------------------------

  function distanceFromBottom() {
    var s = els.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight;
  }

  function scrollToBottom() {
    els.scroller.scrollTop = els.scroller.scrollHeight;
    lastScrollTop = els.scroller.scrollTop;
    sticky = true;
    refreshJump(false);
  }

  // Scrolling up leaves the bottom; scrolling back down near it follows new content again.
  function onScroll() {
    var top = els.scroller.scrollTop;
    if (top < lastScrollTop - 1) {
      sticky = false;
    } else if (distanceFromBottom() < NEAR_BOTTOM_PX) {
      sticky = true;
    }
    lastScrollTop = top;
    refreshJump(false);
    if (top < NEAR_TOP_PX) {
      loadMore();
    }
  }

  function refreshJump(newContent) {
    var away = !sticky && distanceFromBottom() > NEAR_BOTTOM_PX;
    if (!away && document.activeElement === els.jump) {
      els.input.focus();
    }
    els.jump.hidden = !away;
    if (!away) {
      delete els.jump.dataset.unread;
    } else if (newContent) {
      els.jump.dataset.unread = "true";
    }
  }

  // Runs `change`, then follows the new content only if the reader is following it.
  function withAutoScroll(change) {
    change();
    if (sticky) {
      scrollToBottom();
    } else {
      refreshJump(true);
    }
  }

  function upsertMessage(message, previous) {
    var el = buildMessage(message);
    var old = previous || (message.id != null && findMessage(message.id));
    withAutoScroll(function () {
      if (old) {
        old.replaceWith(el);
      } else {
        els.messages.insertBefore(el, typingEl || queuedEl());
      }
      addActions(); // inside: a Retry button added after the scroll would sit under the form
    });
  }

  function replaceMessages(messages) {
    typingEl = null;
    var kept = (approval ? [approval.el] : []).concat(queued ? [queued.el] : []);
    els.messages.replaceChildren.apply(els.messages, messages.map(buildMessage).concat(kept));
    root.dataset.loaded = "true";
    addActions();
  }

  // Runs `change` (which adds content above the viewport) without moving what the reader sees.
  function keepPosition(change) {
    var s = els.scroller;
    var fromBottom = s.scrollHeight - s.scrollTop;
    change();
    s.scrollTop = s.scrollHeight - fromBottom;
    lastScrollTop = s.scrollTop;
  }

  function prependMessages(messages) {
    var fragment = document.createDocumentFragment();
    messages.forEach(function (message) {
      if (message.id == null || !findMessage(message.id)) {
        fragment.appendChild(buildMessage(message));
      }
    });
    els.messages.insertBefore(fragment, els.messages.firstChild);
    addActions();
  }

  // Shows the message of the page's #message-<id> (a search result): on the latest page, on an
  // older one (loaded until it comes), or on another branch (switched to once).
  function seekTarget() {
    if (!target) {
      return;
    }
    var el = findMessage(target.id);
    if (el) {
      target = null;
      el.dataset.target = "true";
      el.scrollIntoView({ block: "center" });
      lastScrollTop = els.scroller.scrollTop;
      sticky = distanceFromBottom() < NEAR_BOTTOM_PX;
      refreshJump(false);
    } else if (hasMore) {
      loadMore();
    } else if (!target.switched && ready) {
      target.switched = true;
      send({ type: "switch_branch", message_id: Number(target.id) });
    } else {
      target = null;
    }
  }

  // Loads older pages until the list can scroll (or there are none), so scrolling up can page.
  function fillViewport() {
    if (hasMore && els.scroller.scrollHeight <= els.scroller.clientHeight + NEAR_TOP_PX) {
      loadMore();
    }
  }

  // ---- streaming -------------------------------------------------------------------------

  function renderStream(current) {
    current.frame = 0;
    var body = current.el.querySelector(".pyhub-msg-body");
    withAutoScroll(function () {
      renderMarkdown(body, current.text);
    });
  }

  // Forgets the streaming reply. With a status ("error", "interrupted"), its partial text
  // stays on the page, marked with that status. Returns the stream ({el, text...}), if any.
  function stopStream(status) {
    if (!stream) {
      return null;
    }
    var current = stream;
    stream = null;
    cancelAnimationFrame(current.frame);
    els.messages.removeAttribute("aria-busy");
    if (status) {
      upsertMessage({
        id: current.el.dataset.id, role: "ai", text: current.text, status: status, turn_id: current.turnId
      }, current.el);
    }
    return current;
  }

  // ---- server frames ---------------------------------------------------------------------

  function onWelcome(frame) {
    if (frame.protocol !== PROTOCOL) {
      stopped = true;
      setConnection("closed", t("outdated"));
      showError(t("outdated"));
      socket.close();
      return;
    }
    ready = true;
    everConnected = true;
    retries = 0;
    freshHistory = true;
    maxLength = Number(frame.max_message_length) || 0;
    showModelChoices(frame.models, frame.model);
    setConnection("open", t("connected"));
    clearError();
    refreshForm();
  }

  // The model selector (welcome.models): hidden when the consumer offers no choice.
  function showModelChoices(models, current) {
    if (!els.model) {
      return;
    }
    var list = Array.isArray(models) ? models : [];
    els.model.textContent = "";
    list.forEach(function (choice) {
      var option = document.createElement("option");
      option.value = String(choice.value);
      option.textContent = String(choice.label);
      els.model.appendChild(option);
    });
    els.model.value = current || "";
    (els.model.closest("label") || els.model).hidden = list.length === 0;
  }

  function onModelSelected(frame) {
    if (els.model) {
      els.model.value = frame.model;
    }
  }

  function onHistory(frame) {
    var messages = Array.isArray(frame.messages) ? frame.messages : [];
    hasMore = Boolean(frame.has_more);
    if (frame.reset && !freshHistory) {
      // Another branch is shown (an edit, a regenerated reply, a switch from any tab).
      loadingMore = false;
      replaceMessages(messages);
      var streaming = stream && findMessage(stream.el.dataset.id);
      if (streaming) {
        streaming.replaceWith(stream.el); // a reply streaming on the branch shown goes on
      }
      refreshLoadMore();
      scrollToBottom();
      fillViewport();
      seekTarget();
      return;
    }
    if (freshHistory) {
      freshHistory = false;
      expectFirstTurn = messages.length === 0;
      replaceMessages(messages);
      refreshLoadMore();
      scrollToBottom();
      if (pending) {
        sendPending(); // a message sent just before the connection dropped: same key, no duplicate
      } else {
        sendQueued();
      }
    } else {
      loadingMore = false;
      keepPosition(function () {
        prependMessages(messages);
        refreshLoadMore();
      });
    }
    fillViewport();
    seekTarget();
  }

  // Tells the page around the chat (a sidebar's message count) that a message was stored.
  function notifyStored(message) {
    document.dispatchEvent(new CustomEvent("pyhub:stored", { detail: { id: message.id, role: message.role } }));
  }

  function onMessage(frame) {
    var message = frame.message;
    if (!message) {
      return;
    }
    if (!frame.duplicate && message.id != null && !findMessage(message.id)) {
      notifyStored(message);
    }
    upsertMessage(message);
    if (pending && message.role === "human" && message.text === pending.text) {
      pending = null;
      if (frame.duplicate) {
        awaitingReply = false; // already stored: no turn follows
        showTyping(false);
      }
      refreshForm();
      sendQueued();
    }
  }

  function onStreamStart(frame) {
    dropApproval(); // answered (by this tab or another): the turn goes on
    var sameTurn = toolTurn && toolTurn.turnId === frame.turn_id;
    var own = awaitingReply || expectFirstTurn || Boolean(sameTurn && toolTurn.own);
    var stopAgain = Boolean(sameTurn && toolTurn.stopping); // Stop pressed while the tools ran
    stopStream("interrupted");
    awaitingReply = false;
    expectFirstTurn = false;
    toolTurn = null;
    showTyping(false);
    var el = buildMessage({ id: frame.message_id, role: "ai", text: "", status: "streaming", turn_id: frame.turn_id });
    el.appendChild(typingIndicator());
    stream = { turnId: frame.turn_id, el: el, text: "", frame: 0, own: own, stopping: false };
    els.messages.setAttribute("aria-busy", "true");
    var placeholder = findMessage(frame.message_id); // in the page of a new branch
    withAutoScroll(function () {
      if (placeholder) {
        placeholder.replaceWith(el);
      } else {
        els.messages.insertBefore(el, queuedEl());
      }
    });
    notifyStored({ id: frame.message_id, role: "ai" });
    if (own && (stopRequested || stopAgain)) {
      stopReply();
    }
    stopRequested = false;
    refreshForm();
  }

  function onStreamDelta(frame) {
    if (!stream || frame.turn_id !== stream.turnId || typeof frame.text !== "string") {
      return;
    }
    var current = stream;
    current.text += frame.text;
    if (!current.frame) {
      current.frame = requestAnimationFrame(function () {
        renderStream(current);
      });
    }
  }

  // The model called tools: its step is complete (text so far + the calls); results follow.
  function onToolCall(frame) {
    var own = Boolean(stream && stream.own);
    var current = stream && stream.turnId === frame.turn_id ? stopStream() : null;
    upsertMessage({
      id: frame.message_id, role: "ai", text: current ? current.text : "", status: "complete",
      turn_id: frame.turn_id, tool_calls: frame.tool_calls
    }, current && current.el);
    toolTurn = { turnId: frame.turn_id, own: own };
    showTyping(true);
    refreshForm();
  }

  function onToolResult(frame) {
    if (frame.message) {
      upsertMessage(frame.message);
    }
  }

  function onStreamEnd(frame) {
    var previous = stream && stream.turnId === frame.turn_id ? stopStream() : null;
    toolTurn = null;
    showTyping(false);
    if (frame.message) {
      upsertMessage(frame.message, previous && previous.el);
      if (frame.message.status === "interrupted" && previous) {
        announce(t("stopped"));
      }
    }
    refreshForm();
    sendQueued();
  }

  // ---- approvals: tool calls the graph waits to have approved (protocol 1.4) ---------------

  // The turn paused: its step that calls the tools is stored; each pending call gets
  // Approve / Edit (its arguments as JSON) / Reject (an optional reason).
  function onApprovalRequest(frame) {
    var previous = stream && stream.turnId === frame.turn_id ? stopStream() : null;
    awaitingReply = false;
    toolTurn = null;
    showTyping(false);
    if (frame.message) {
      upsertMessage(frame.message, previous && previous.el);
    }
    showApproval(frame);
    refreshForm();
  }

  function showApproval(frame) {
    dropApproval();
    var requests = Array.isArray(frame.requests) ? frame.requests : [];
    var el = make("div", "pyhub-approval");
    el.setAttribute("role", "group");
    el.setAttribute("aria-label", t("approvalTitle"));
    el.appendChild(make("p", "pyhub-approval-title", t("approvalTitle")));
    approval = { frame: frame, el: el, decisions: requests.map(function () { return null; }), sent: false };
    requests.forEach(function (request, index) {
      el.appendChild(approvalItem(request, index));
    });
    withAutoScroll(function () {
      els.messages.insertBefore(el, typingEl || queuedEl());
    });
    announce(t("approvalTitle"));
  }

  function dropApproval() {
    if (approval) {
      approval.el.remove();
      approval = null;
    }
  }

  function approvalItem(request, index) {
    var item = make("div", "pyhub-approval-item");
    var allowed = Array.isArray(request.allowed_decisions) ? request.allowed_decisions : [];
    item.appendChild(make("p", "pyhub-approval-name", t("approvalCall", { name: request.name || "" })));
    item.appendChild(make("pre", "pyhub-approval-args", JSON.stringify(request.args || {}, null, 2)));
    var bar = make("div", "pyhub-approval-actions");
    function add(kind, label, onClick) {
      if (allowed.indexOf(kind) >= 0) {
        var choice = button("pyhub-approval-button pyhub-approval-" + kind, label);
        choice.addEventListener("click", onClick);
        bar.appendChild(choice);
      }
    }
    add("approve", t("approve"), function () {
      decide(item, index, { type: "approve" });
    });
    add("edit", t("edit"), function () {
      var parts = approvalForm(item, "pyhub-approval-edit", JSON.stringify(request.args || {}, null, 2), t("approvalArgs"), t("saveEdit"));
      parts.area.rows = Math.min(10, parts.area.value.split("\n").length + 1);
      parts.form.addEventListener("submit", function (event) {
        event.preventDefault();
        var args = null;
        try {
          args = JSON.parse(parts.area.value);
        } catch (e) {
          args = null;
        }
        if (!args || typeof args !== "object" || Array.isArray(args)) {
          parts.error.textContent = t("approvalBadArgs");
          parts.area.setAttribute("aria-invalid", "true");
          parts.area.focus();
          return;
        }
        decide(item, index, { type: "edit", edited_action: { name: request.name, args: args } });
      });
    });
    add("reject", t("reject"), function () {
      var parts = approvalForm(item, "pyhub-approval-reject", "", t("approvalReason"), t("reject"));
      parts.area.rows = 2;
      parts.area.maxLength = 2000;
      parts.area.placeholder = t("approvalReason");
      parts.form.addEventListener("submit", function (event) {
        event.preventDefault();
        var reason = parts.area.value.trim();
        decide(item, index, reason ? { type: "reject", message: reason } : { type: "reject" });
      });
    });
    item.appendChild(bar);
    return item;
  }

  // A form below a pending call (one at a time): Edit's arguments, Reject's reason.
  function approvalForm(item, prefix, value, label, saveLabel) {
    var open = item.querySelector(".pyhub-msg-form");
    if (open) {
      open.remove();
    }
    var parts = textForm(prefix, value, label, saveLabel);
    parts.error = make("p", "pyhub-approval-error");
    parts.error.setAttribute("role", "alert");
    parts.form.insertBefore(parts.error, parts.form.firstChild.nextSibling);
    parts.cancel.addEventListener("click", function () {
      parts.form.remove();
    });
    parts.area.addEventListener("keydown", function (event) {
      if (event.key === "Escape") {
        event.preventDefault();
        event.stopPropagation();
        parts.form.remove();
      }
    });
    withAutoScroll(function () {
      item.appendChild(parts.form);
    });
    parts.area.focus();
    return parts;
  }

  // Records the decision on one call; once every call has one, the answer goes to the server.
  function decide(item, index, decision) {
    if (!approval || approval.sent || !ready) {
      return;
    }
    approval.decisions[index] = decision;
    item.dataset.decision = decision.type;
    var form = item.querySelector(".pyhub-msg-form");
    if (form) {
      form.remove();
    }
    Array.prototype.forEach.call(item.querySelectorAll(".pyhub-approval-button"), function (choice) {
      choice.disabled = true;
    });
    if (approval.decisions.every(function (given) { return given !== null; })) {
      approval.sent = true;
      approval.el.dataset.sent = "true";
      clearError();
      send({ type: "approval", interrupt_id: String(approval.frame.interrupt_id || ""), decisions: approval.decisions });
      awaitingReply = true;
      expectFirstTurn = false;
      showTyping(true);
      refreshForm();
    }
  }

  function onError(frame) {
    if (approval && approval.sent) {
      // Refused: a stale request goes; otherwise (busy, a limit) it can be answered again.
      var frameOfRequest = approval.frame;
      dropApproval();
      if (frame.code !== "approval_not_pending") {
        showApproval(frameOfRequest);
      }
    }
    if (pending && frame.code === "turn_in_progress") {
      // A reply we did not see start yet (the greeting an empty thread starts by itself): wait for it.
      queueText(pending.text);
      pending = null;
      awaitingReply = false;
      showTyping(false);
      refreshForm();
      return;
    }
    showError(frame.message || t("genericError"));
    if (pending) {
      // Refused before it was stored (too long, busy, rate limited...): give the text back.
      if (!els.input.value) {
        els.input.value = pending.text;
        resizeInput();
      }
      pending = null;
    }
    awaitingReply = false;
    stopRequested = false;
    showTyping(false);
    if (stream && frame.turn_id && frame.turn_id === stream.turnId) {
      stopStream("error");
    }
    if (toolTurn && frame.turn_id === toolTurn.turnId) {
      toolTurn = null;
    }
    refreshForm();
    sendQueued();
  }

  var HANDLERS = {
    welcome: onWelcome,
    history: onHistory,
    message: onMessage,
    stream_start: onStreamStart,
    stream_delta: onStreamDelta,
    tool_call: onToolCall,
    tool_result: onToolResult,
    stream_end: onStreamEnd,
    approval_request: onApprovalRequest,
    feedback: onFeedback,
    model_selected: onModelSelected,
    error: onError
  };

  function onFrame(data) {
    var frame;
    try {
      frame = JSON.parse(data);
    } catch (e) {
      return;
    }
    if (frame && Object.prototype.hasOwnProperty.call(HANDLERS, frame.type)) {
      HANDLERS[frame.type](frame);
    }
  }

  // ---- connection ------------------------------------------------------------------------

  function setConnection(state, label) {
    els.connection.dataset.state = state;
    els.connection.textContent = label;
    root.dataset.connection = state;
  }

  function showError(message) {
    els.error.textContent = message;
  }

  function clearError() {
    els.error.textContent = "";
  }

  // The browser's time zone, for the server's messages that name a time ("it resets tomorrow"):
  // the pyhub_ai_timezone cookie, sent with the websocket handshake (docs/protocol.md).
  function rememberTimeZone() {
    try {
      var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
      if (zone) {
        document.cookie = "pyhub_ai_timezone=" + zone + "; path=/; max-age=31536000; samesite=lax";
      }
    } catch (error) {
      // No Intl: the server says times in its own time zone.
    }
  }

  function connect() {
    if (!root && !init()) {
      return;
    }
    clearTimeout(retryTimer);
    retryTimer = null;
    stopped = false;
    if (socket) {
      var old = socket;
      dropSocket();
      old.close();
    }
    setConnection("connecting", t("connecting"));
    refreshForm();
    rememberTimeZone();
    var ws = new WebSocket(socketUrl(root.dataset.wsUrl || ""));
    socket = ws;
    ws.onmessage = function (event) {
      if (ws === socket && typeof event.data === "string") {
        onFrame(event.data);
      }
    };
    ws.onclose = function (event) {
      if (ws === socket) {
        onClose(event);
      }
    };
  }

  // Forgets the current socket and everything that only made sense while it was open.
  // `pending` is kept: it is resent with the same idempotency key after the next welcome.
  function dropSocket() {
    socket = null;
    ready = false;
    awaitingReply = false;
    loadingMore = false;
    stopRequested = false;
    toolTurn = null;
    showTyping(false);
    stopStream("interrupted");
    dropApproval(); // sent again after the next history, if the thread still waits for it
  }

  function onClose(event) {
    dropSocket();
    if (REFUSALS[event.code]) {
      stopped = true;
      setConnection("refused", t(REFUSALS[event.code]));
      showError(t(REFUSALS[event.code]));
    } else if (!stopped) {
      scheduleReconnect();
    }
    refreshForm();
    refreshLoadMore();
  }

  // 1s, 2s, 4s ... at most 15s between attempts.
  function scheduleReconnect() {
    var delay = Math.min(1000 * Math.pow(2, retries), MAX_RETRY_DELAY);
    retries += 1;
    if (!everConnected && retries >= 2) {
      // The websocket never opened: say so instead of "Connecting…" forever.
      setConnection("closed", t("unreachable"));
      showError(t("unreachable"));
      if (retries === 2) {
        console.error("pyhub_ai: the websocket " + socketUrl(root.dataset.wsUrl || "") + " does not connect. " +
          "Is the site served by an ASGI server (daphne) with this URL routed in asgi.py?");
      }
    } else {
      setConnection("closed", t("reconnecting"));
    }
    retryTimer = setTimeout(connect, delay);
  }

  function reconnectNow() {
    if (retryTimer) {
      connect();
    }
  }

  // ---- the form --------------------------------------------------------------------------

  function isBusy() {
    return awaitingReply || stream !== null || toolTurn !== null || approval !== null;
  }

  function canSend() {
    return ready && !isBusy();
  }

  function canStop() {
    return awaitingReply || Boolean(stream && stream.own) || Boolean(toolTurn && toolTurn.own);
  }

  function isTooLong(value) {
    return maxLength > 0 && charCount(value) > maxLength;
  }

  function refreshForm() {
    var value = els.input.value;
    var count = charCount(value);
    var tooLong = isTooLong(value);
    var showCount = maxLength > 0 && count >= maxLength * COUNTER_FROM;
    els.counter.textContent = showCount ? t(tooLong ? "tooLong" : "counter", { count: count, max: maxLength }) : "";
    els.counter.dataset.over = String(tooLong);
    els.input.setAttribute("aria-invalid", String(tooLong));
    els.input.disabled = stopped;
    els.send.disabled = !canSend() || tooLong || uploading();
    var showStop = canStop();
    var stopHadFocus = document.activeElement === els.stop;
    els.stop.hidden = !showStop;
    els.stop.disabled = Boolean((stream || toolTurn || {}).stopping) || stopRequested;
    els.send.hidden = showStop;
    if (stopHadFocus && !showStop) {
      els.input.focus();
    }
    refreshActions();
    root.dataset.busy = String(isBusy());
  }

  function resizeInput() {
    els.input.style.height = "auto";
    els.input.style.height = Math.min(els.input.scrollHeight, MAX_INPUT_HEIGHT_PX) + "px";
  }

  function sendPending() {
    var frame = { type: "user_message", text: pending.text, idempotency_key: pending.key };
    if (pending.attachments && pending.attachments.length) {
      frame.attachments = pending.attachments;
    }
    send(frame);
    awaitingReply = true;
    expectFirstTurn = false;
    showTyping(true);
    refreshForm();
  }

  // Sends `text` as a new user message (fresh idempotency key); false if it cannot be sent now.
  function sendText(text) {
    var files = readyFiles();
    if (!canSend() || (!text.trim() && !files.length) || isTooLong(text) || uploading()) {
      return false;
    }
    pending = { text: text, key: newKey(), attachments: files };
    clearFiles();
    clearError();
    scrollToBottom();
    sendPending();
    return true;
  }

  function sendMessage() {
    var text = els.input.value;
    var sent = sendText(text);
    if (!sent && text.trim() && !isTooLong(text) && !stopped && !queued && !attached.length) {
      queueText(text); // a reply is running (or the page is connecting): sent when it is done
      sent = true;
    }
    if (sent) {
      els.input.value = "";
      resizeInput();
      refreshForm();
      els.input.focus();
    }
  }

  // ---- files attached to the next message ------------------------------------------------

  function readyFiles() {
    return attached.filter(function (file) { return file.id != null; }).map(function (file) { return file.id; });
  }

  function uploading() {
    return attached.some(function (file) { return file.id == null; });
  }

  function clearFiles() {
    attached = [];
    if (els.files) {
      els.files.replaceChildren();
      els.files.hidden = true;
    }
  }

  function dropFile(file) {
    attached = attached.filter(function (other) { return other !== file; });
    file.el.remove();
    els.files.hidden = !attached.length;
    refreshForm();
  }

  // Uploads a chosen file (the page's CSRF token in a header); a chip shows it until it is sent.
  function attachFile(chosen) {
    var file = { id: null, name: chosen.name, el: make("li", "pyhub-chat-file-chip") };
    file.el.appendChild(make("span", "pyhub-chat-file-name", chosen.name));
    var state = file.el.appendChild(make("span", "pyhub-chat-file-state", t("uploading")));
    var remove = button("pyhub-chat-file-remove", "×");
    remove.setAttribute("aria-label", t("removeFile", { name: chosen.name }));
    remove.addEventListener("click", function () {
      dropFile(file);
      els.input.focus();
    });
    file.el.appendChild(remove);
    attached.push(file);
    els.files.appendChild(file.el);
    els.files.hidden = false;
    refreshForm();
    var body = new FormData();
    body.append("file", chosen);
    var token = els.form.querySelector("input[name=csrfmiddlewaretoken]");
    fetch(root.dataset.uploadUrl, {
      method: "POST", body: body, credentials: "same-origin",
      headers: token ? { "X-CSRFToken": token.value } : {}
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        if (!response.ok || data.id == null) {
          throw new Error(data.error || t("genericError"));
        }
        file.id = data.id;
        state.remove();
        file.el.dataset.ready = "true";
      });
    }).catch(function (error) {
      dropFile(file);
      showError(t("uploadFailed", { name: chosen.name, error: error.message }));
    }).then(refreshForm);
  }

  // ---- a message written while a reply runs ----------------------------------------------

  function queuedEl() {
    return queued ? queued.el : null;
  }

  // Shows `text` below the running reply, marked "sent when the reply is finished", with a
  // button that takes it back into the input.
  function queueText(text) {
    var el = make("div", "pyhub-msg pyhub-msg-queued");
    el.dataset.role = "human";
    el.dataset.status = "queued";
    el.appendChild(make("span", "pyhub-msg-role", t("roleHuman")));
    el.appendChild(make("div", "pyhub-msg-body", text));
    el.appendChild(make("p", "pyhub-msg-status", t("queued")));
    var cancel = button("pyhub-msg-unqueue", t("unqueue"));
    cancel.addEventListener("click", function () {
      if (queued && queued.el === el) {
        dropQueued();
        if (!els.input.value) {
          els.input.value = text;
          resizeInput();
          refreshForm();
        }
        els.input.focus();
      }
    });
    el.appendChild(cancel);
    dropQueued();
    queued = { text: text, el: el };
    withAutoScroll(function () {
      els.messages.appendChild(el);
    });
    announce(t("queued"));
  }

  function dropQueued() {
    if (queued) {
      queued.el.remove();
      queued = null;
    }
  }

  // Sends the queued message once nothing else runs.
  function sendQueued() {
    if (queued && canSend()) {
      var text = queued.text;
      dropQueued();
      sendText(text);
    }
  }

  function stopReply() {
    var running = stream || toolTurn;
    if (running && running.own && !running.stopping && ready) {
      running.stopping = true;
      send({ type: "stop" });
    } else if (awaitingReply) {
      stopRequested = true; // sent as soon as the reply starts
    }
    refreshForm();
    if (document.activeElement === els.stop || document.activeElement === document.body) {
      els.input.focus();
    }
  }

  function onKeyDown(event) {
    if (event.key !== "Enter" || event.shiftKey || composing || event.isComposing || event.keyCode === 229) {
      return;
    }
    event.preventDefault();
    sendMessage();
  }

  // ---- older messages --------------------------------------------------------------------

  function loadMore() {
    var before = oldestId();
    if (!ready || !hasMore || loadingMore || before === null) {
      return;
    }
    loadingMore = true;
    send({ type: "load_history", before: before });
    refreshLoadMore();
  }

  function refreshLoadMore() {
    var load = els.loadMore;
    if (!hasMore && document.activeElement === load) {
      els.input.focus();
    }
    load.hidden = !hasMore || stopped;
    load.disabled = loadingMore || !ready;
    load.textContent = t(loadingMore ? "loading" : "loadMore");
  }

  // ---- setup -----------------------------------------------------------------------------

  function init() {
    root = byId("pyhub-chat");
    if (!root) {
      return false;
    }
    strings = JSON.parse(byId("pyhub-chat-i18n").textContent);
    var wanted = /^#message-(\d+)$/.exec(window.location.hash);
    target = wanted ? { id: wanted[1], switched: false } : null;
    els = {
      connection: byId("pyhub-chat-connection"),
      scroller: byId("pyhub-chat-scroll"),
      messages: byId("pyhub-chat-messages"),
      loadMore: byId("pyhub-chat-load-more"),
      jump: byId("pyhub-chat-jump"),
      error: byId("pyhub-chat-error"),
      announce: byId("pyhub-chat-announce"),
      form: byId("pyhub-chat-form"),
      input: byId("pyhub-chat-input"),
      send: byId("pyhub-chat-send"),
      stop: byId("pyhub-chat-stop"),
      counter: byId("pyhub-chat-counter"),
      model: byId("pyhub-chat-model"),
      attach: byId("pyhub-chat-attach"),
      file: byId("pyhub-chat-file"),
      files: byId("pyhub-chat-files")
    };
    if (els.attach && els.file && els.files && root.dataset.uploadUrl) {
      els.attach.addEventListener("click", function () {
        els.file.click();
      });
      els.file.addEventListener("change", function () {
        Array.prototype.forEach.call(els.file.files, attachFile);
        els.file.value = "";
        els.input.focus();
      });
    }
    els.form.addEventListener("submit", function (event) {
      event.preventDefault();
      sendMessage();
    });
    els.input.addEventListener("keydown", onKeyDown);
    els.input.addEventListener("compositionstart", function () {
      composing = true;
    });
    els.input.addEventListener("compositionend", function () {
      setTimeout(function () {
        composing = false; // after the keydown that ended the composition (Safari)
      }, 0);
    });
    els.input.addEventListener("input", function () {
      resizeInput();
      refreshForm();
    });
    els.stop.addEventListener("click", stopReply);
    if (els.model) {
      els.model.addEventListener("change", function () {
        if (socket && ready) {
          send({ type: "select_model", model: els.model.value });
        }
      });
    }
    document.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && !event.defaultPrevented && canStop()) {
        event.preventDefault();
        stopReply();
      }
    });
    els.loadMore.addEventListener("click", loadMore);
    els.jump.addEventListener("click", function () {
      scrollToBottom();
      els.input.focus();
    });
    els.scroller.addEventListener("scroll", onScroll, { passive: true });
    window.addEventListener("online", reconnectNow);
    document.addEventListener("visibilitychange", function () {
      if (!document.hidden) {
        reconnectNow();
      }
    });
    refreshForm();
    return true;
  }

  window.PyhubChat = { connect: connect };

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", connect);
  } else {
    connect();
  }
})();
