/*
 * PyhubMarkdown: a small, safe markdown renderer for model output.
 *
 * Safety model: the whole input is HTML-escaped first, so it can contain no markup at all.
 * Markdown syntax is then turned into a fixed set of tags without attributes, except
 * <a href> (only http:, https:, mailto: and site-relative "/" URLs), <ol start> (digits only)
 * and <code class> (a restricted language name). Attribute values always come from the
 * escaped text, in which quotes are entities, so they cannot end the attribute. Code blocks
 * in a known language go through PyhubHighlight (highlight.js, loaded first if wanted), which
 * escapes every token again and adds only <span class="pyhub-tok-X">.
 *
 * window.PyhubMarkdown.render(text) -> HTML string
 */
(function () {
  "use strict";

  var ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
  var UNESCAPES = { "&amp;": "&", "&lt;": "<", "&gt;": ">", "&quot;": '"', "&#39;": "'" };
  var SAFE_URL = /^(https?:\/\/|mailto:|\/)/;
  var MAX_DEPTH = 8;

  var FENCE = /^ {0,3}```\s*(\S*)/;
  var HEADING = /^(#{1,3})\s+(.*?)(?:\s+#+)?\s*$/;
  var RULE = /^ {0,3}(?:-{3,}|\*{3,}|_{3,})\s*$/;
  var QUOTE = /^ {0,3}&gt; ?/;
  var BULLET = /^\s*[-*+]\s+(.*)$/;
  var NUMBERED = /^\s*(\d{1,9})[.)]\s+(.*)$/;

  function escapeHtml(text) {
    return text.replace(/[&<>"']/g, function (c) { return ESCAPES[c]; });
  }

  function unescapeHtml(text) {
    return text.replace(/&(?:amp|lt|gt|quot|#39);/g, function (e) { return UNESCAPES[e]; });
  }

  // `url` is escaped text. Its unescaped form must literally start with an allowed prefix;
  // anything else (javascript:, data:, vbscript:, entities, odd whitespace) is refused.
  function isSafeUrl(url) {
    return SAFE_URL.test(unescapeHtml(url).toLowerCase());
  }

  function emphasis(text) {
    return text
      .replace(/\*\*(?=\S)([\s\S]*?\S)\*\*/g, "<strong>$1</strong>")
      .replace(/(^|[^\w])__(?=\S)([\s\S]*?\S)__(?!\w)/g, "$1<strong>$2</strong>")
      .replace(/\*(?=\S)([^*]*?\S)\*/g, "<em>$1</em>")
      .replace(/(^|[^\w])_(?=\S)([^_]*?\S)_(?!\w)/g, "$1<em>$2</em>");
  }

  // Inline markdown on one escaped line. Code spans and links are set aside as
  // placeholders (\u0000n\u0000) so that emphasis never touches their content.
  function inline(text) {
    var slots = [];
    function keep(html) {
      return "\u0000" + (slots.push(html) - 1) + "\u0000";
    }
    function restore(s) {
      return s.replace(/\u0000(\d+)\u0000/g, function (m, i) { return restore(slots[i]); });
    }
    var out = text
      .replace(/(`{1,2})(.+?)\1/g, function (m, ticks, code) {
        return keep("<code>" + code + "</code>");
      })
      .replace(/\[([^\[\]]+)\]\(([^()\s]+)\)/g, function (m, label, url) {
        if (!isSafeUrl(url)) {
          return m;
        }
        return keep('<a href="' + url + '" rel="noopener noreferrer nofollow" target="_blank">' +
          emphasis(label) + "</a>");
      });
    return restore(emphasis(out));
  }

  function codeBlock(lines, i, out) {
    var lang = lines[i].match(FENCE)[1];
    var body = [];
    for (i += 1; i < lines.length && !/^ {0,3}```\s*$/.test(lines[i]); i += 1) {
      body.push(lines[i]);
    }
    var safeLang = /^[\w+#.-]{1,32}$/.test(lang);
    var cls = safeLang ? ' class="language-' + lang + '"' : "";
    var code = body.join("\n");
    if (safeLang && window.PyhubHighlight) {
      code = window.PyhubHighlight.highlight(unescapeHtml(code), lang);
    }
    out.push("<pre><code" + cls + ">" + code + "</code></pre>");
    return i + 1;
  }

  function quoteBlock(lines, i, out, depth) {
    var body = [];
    for (; i < lines.length && QUOTE.test(lines[i]); i += 1) {
      body.push(lines[i].replace(QUOTE, ""));
    }
    out.push("<blockquote>" + blocks(body, depth + 1) + "</blockquote>");
    return i;
  }

  function listBlock(lines, i, out) {
    var ordered = !BULLET.test(lines[i]);
    var pattern = ordered ? NUMBERED : BULLET;
    var first = lines[i].match(pattern);
    var items = [];
    for (; i < lines.length && lines[i].trim(); i += 1) {
      var match = lines[i].match(pattern);
      if (match) {
        items.push([inline(match[match.length - 1])]);
      } else if (/^\s/.test(lines[i]) && !startsBlock(lines[i])) {
        items[items.length - 1].push(inline(lines[i].trim()));
      } else {
        break;
      }
    }
    var start = ordered ? parseInt(first[1], 10) : 1;
    var open = ordered ? (start === 1 ? "<ol>" : '<ol start="' + start + '">') : "<ul>";
    out.push(open + items.map(function (parts) {
      return "<li>" + parts.join("<br>") + "</li>";
    }).join("") + (ordered ? "</ol>" : "</ul>"));
    return i;
  }

  function startsBlock(line) {
    return FENCE.test(line) || HEADING.test(line) || RULE.test(line) || QUOTE.test(line) ||
      BULLET.test(line) || NUMBERED.test(line);
  }

  function blocks(lines, depth) {
    if (depth > MAX_DEPTH) {
      return "<p>" + lines.join("<br>") + "</p>";
    }
    var out = [];
    var i = 0;
    while (i < lines.length) {
      var line = lines[i];
      var heading = line.match(HEADING);
      if (!line.trim()) {
        i += 1;
      } else if (FENCE.test(line)) {
        i = codeBlock(lines, i, out);
      } else if (heading) {
        var level = heading[1].length;
        out.push("<h" + level + ">" + inline(heading[2]) + "</h" + level + ">");
        i += 1;
      } else if (RULE.test(line)) {
        out.push("<hr>");
        i += 1;
      } else if (QUOTE.test(line)) {
        i = quoteBlock(lines, i, out, depth);
      } else if (BULLET.test(line) || NUMBERED.test(line)) {
        i = listBlock(lines, i, out);
      } else {
        var para = [];
        for (; i < lines.length && lines[i].trim() && (para.length === 0 || !startsBlock(lines[i])); i += 1) {
          para.push(inline(lines[i].trim()));
        }
        out.push("<p>" + para.join("<br>") + "</p>");
      }
    }
    return out.join("");
  }

  function render(text) {
    var clean = String(text == null ? "" : text).replace(/\u0000/g, "");
    return blocks(escapeHtml(clean).split(/\r\n?|\n/), 0);
  }

  window.PyhubMarkdown = { render: render };
})();
