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
  var REFUSALS = { 4401: "unauthorized", 4403: "forbidden" };
  var ROLE_LABELS = { human: "roleHuman", ai: "roleAi", tool: "roleTool", system: "roleSystem" };
  var STATUS_LABELS = { error: "failed", interrupted: "interrupted" };

  var root = null;
  var els = {};
  var strings = {};
  var socket = null;
  var retries = 0;
  var retryTimer = null;
  var stopped = false; // refused or outdated: never reconnect on our own
  var ready = false; // welcome received on the current socket
  var maxLength = 0;
  var freshHistory = false; // the next history frame replaces the list
  var hasMore = false;
  var loadingMore = false;
  var awaitingReply = false; // user_message sent, reply not started yet
  var stream = null; // {turnId, el, text, frame}

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

  function charCount(value) {
    return Array.from(value).length; // code points, like Python's len()
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
    el.appendChild(make("span", "pyhub-msg-role", t(ROLE_LABELS[role])));
    el.appendChild(role === "tool" ? toolResult(message) : messageBody(role, message.text));
    if (role === "ai" && Array.isArray(message.tool_calls) && message.tool_calls.length) {
      el.appendChild(toolCalls(message.tool_calls));
    }
    if (STATUS_LABELS[el.dataset.status]) {
      el.appendChild(make("p", "pyhub-msg-status", t(STATUS_LABELS[el.dataset.status])));
    }
    return el;
  }

  function messageBody(role, value) {
    var body = make("div", "pyhub-msg-body");
    if (role === "ai") {
      body.innerHTML = window.PyhubMarkdown.render(value || "");
    } else {
      body.textContent = value || "";
    }
    return body;
  }

  function toolResult(message) {
    var details = make("details", "pyhub-msg-tool");
    details.appendChild(make("summary", null, t("toolResult", { name: message.name || "" })));
    details.appendChild(make("pre", "pyhub-msg-body", message.text || ""));
    return details;
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

  function findMessage(id) {
    return els.messages.querySelector('.pyhub-msg[data-id="' + CSS.escape(String(id)) + '"]');
  }

  function oldestId() {
    var first = els.messages.querySelector(".pyhub-msg[data-id]");
    return first ? Number(first.dataset.id) : null;
  }

  // ---- scrolling -------------------------------------------------------------------------

  function scrollToBottom() {
    els.scroller.scrollTop = els.scroller.scrollHeight;
  }

  // Runs `change`, then follows the new content only if the reader was already at the bottom.
  function withAutoScroll(change) {
    var s = els.scroller;
    var atBottom = s.scrollHeight - s.scrollTop - s.clientHeight < NEAR_BOTTOM_PX;
    change();
    if (atBottom) {
      scrollToBottom();
    }
  }

  function upsertMessage(message, previous) {
    var el = buildMessage(message);
    var old = previous || (message.id != null && findMessage(message.id));
    withAutoScroll(function () {
      if (old) {
        old.replaceWith(el);
      } else {
        els.messages.appendChild(el);
      }
    });
  }

  function replaceMessages(messages) {
    els.messages.replaceChildren.apply(els.messages, messages.map(buildMessage));
    root.dataset.loaded = "true";
  }

  // Runs `change` (which adds content above the viewport) without moving what the reader sees.
  function keepPosition(change) {
    var s = els.scroller;
    var fromBottom = s.scrollHeight - s.scrollTop;
    change();
    s.scrollTop = s.scrollHeight - fromBottom;
  }

  function prependMessages(messages) {
    var fragment = document.createDocumentFragment();
    messages.forEach(function (message) {
      if (message.id == null || !findMessage(message.id)) {
        fragment.appendChild(buildMessage(message));
      }
    });
    els.messages.insertBefore(fragment, els.messages.firstChild);
  }

  // ---- streaming -------------------------------------------------------------------------

  function renderStream(current) {
    current.frame = 0;
    var body = current.el.querySelector(".pyhub-msg-body");
    withAutoScroll(function () {
      body.innerHTML = window.PyhubMarkdown.render(current.text);
    });
  }

  // Forgets the streaming reply. With a status ("error", "interrupted"), its partial text
  // stays on the page, marked with that status. Returns the streaming element, if any.
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
    return current.el;
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
    retries = 0;
    freshHistory = true;
    maxLength = Number(frame.max_message_length) || 0;
    setConnection("open", t("connected"));
    clearError();
    refreshForm();
  }

  function onHistory(frame) {
    var messages = Array.isArray(frame.messages) ? frame.messages : [];
    hasMore = Boolean(frame.has_more);
    if (freshHistory) {
      freshHistory = false;
      replaceMessages(messages);
      refreshLoadMore();
      scrollToBottom();
    } else {
      loadingMore = false;
      keepPosition(function () {
        prependMessages(messages);
        refreshLoadMore();
      });
    }
  }

  function onMessage(frame) {
    if (frame.message) {
      upsertMessage(frame.message);
    }
  }

  function onStreamStart(frame) {
    stopStream("interrupted");
    awaitingReply = false;
    var el = buildMessage({ id: frame.message_id, role: "ai", text: "", status: "streaming", turn_id: frame.turn_id });
    el.appendChild(typingIndicator());
    stream = { turnId: frame.turn_id, el: el, text: "", frame: 0 };
    els.messages.setAttribute("aria-busy", "true");
    withAutoScroll(function () {
      els.messages.appendChild(el);
    });
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

  function onStreamEnd(frame) {
    var previous = stream && stream.turnId === frame.turn_id ? stopStream() : null;
    if (frame.message) {
      upsertMessage(frame.message, previous);
    }
    refreshForm();
  }

  function onError(frame) {
    showError(frame.message || t("genericError"));
    awaitingReply = false;
    if (stream && frame.turn_id && frame.turn_id === stream.turnId) {
      stopStream("error");
    }
    refreshForm();
  }

  var HANDLERS = {
    welcome: onWelcome,
    history: onHistory,
    message: onMessage,
    stream_start: onStreamStart,
    stream_delta: onStreamDelta,
    stream_end: onStreamEnd,
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
  function dropSocket() {
    socket = null;
    ready = false;
    awaitingReply = false;
    loadingMore = false;
    stopStream("interrupted");
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
    setConnection("closed", t("reconnecting"));
    retryTimer = setTimeout(connect, delay);
  }

  // ---- the form --------------------------------------------------------------------------

  function isBusy() {
    return awaitingReply || stream !== null;
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
    els.send.disabled = !ready || isBusy() || tooLong;
    root.dataset.busy = String(isBusy());
  }

  function resizeInput() {
    els.input.style.height = "auto";
    els.input.style.height = Math.min(els.input.scrollHeight, MAX_INPUT_HEIGHT_PX) + "px";
  }

  function sendMessage() {
    var value = els.input.value;
    if (!ready || isBusy() || !value.trim() || isTooLong(value)) {
      return;
    }
    send({ type: "user_message", text: value });
    awaitingReply = true;
    els.input.value = "";
    resizeInput();
    clearError();
    refreshForm();
    scrollToBottom();
    els.input.focus();
  }

  function onKeyDown(event) {
    if (event.key !== "Enter" || event.shiftKey || event.isComposing || event.keyCode === 229) {
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
    var button = els.loadMore;
    if (!hasMore && document.activeElement === button) {
      els.input.focus();
    }
    button.hidden = !hasMore || stopped;
    button.disabled = loadingMore || !ready;
    button.textContent = t(loadingMore ? "loading" : "loadMore");
  }

  // ---- setup -----------------------------------------------------------------------------

  function init() {
    root = byId("pyhub-chat");
    if (!root) {
      return false;
    }
    strings = JSON.parse(byId("pyhub-chat-i18n").textContent);
    els = {
      connection: byId("pyhub-chat-connection"),
      scroller: byId("pyhub-chat-scroll"),
      messages: byId("pyhub-chat-messages"),
      loadMore: byId("pyhub-chat-load-more"),
      error: byId("pyhub-chat-error"),
      form: byId("pyhub-chat-form"),
      input: byId("pyhub-chat-input"),
      send: byId("pyhub-chat-send"),
      counter: byId("pyhub-chat-counter")
    };
    els.form.addEventListener("submit", function (event) {
      event.preventDefault();
      sendMessage();
    });
    els.input.addEventListener("keydown", onKeyDown);
    els.input.addEventListener("input", function () {
      resizeInput();
      refreshForm();
    });
    els.loadMore.addEventListener("click", loadMore);
    els.scroller.addEventListener("scroll", function () {
      if (els.scroller.scrollTop < NEAR_TOP_PX) {
        loadMore();
      }
    }, { passive: true });
    window.addEventListener("online", function () {
      if (retryTimer) {
        connect();
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
