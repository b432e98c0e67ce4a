/*
 * PyhubHighlight: a tiny syntax highlighter for the code blocks of PyhubMarkdown.
 *
 * Safety model: the code is split into tokens by fixed regular expressions; every token is
 * HTML-escaped, and the only markup added is <span class="pyhub-tok-X"> with X one of
 * k (keyword), s (string), c (comment), n (number), a (attribute). Unknown languages are
 * returned escaped and unstyled.
 *
 * window.PyhubHighlight.highlight(code, language) -> HTML string (code is plain text)
 */
(function () {
  "use strict";

  var ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

  function escapeHtml(text) {
    return text.replace(/[&<>"']/g, function (c) { return ESCAPES[c]; });
  }

  function words(list) {
    return "\\b(?:" + list.split(" ").join("|") + ")\\b";
  }

  var NUMBER = "\\b(?:0[xXbBoO][\\da-fA-F_]+|\\d[\\d_]*(?:\\.\\d[\\d_]*)?(?:[eE][+-]?\\d+)?)\\b";
  var C_COMMENT = "\\/\\*[\\s\\S]*?(?:\\*\\/|$)";
  var DQ = '"(?:\\\\.|[^"\\\\\\n])*"?';
  var SQ = "'(?:\\\\.|[^'\\\\\\n])*'?";

  // Per language: [token class, regular expression source], tried in this order.
  var RULES = {
    python: [
      ["c", "#.*"],
      ["s", "[rRbBuUfF]{0,2}(?:\"\"\"[\\s\\S]*?(?:\"\"\"|$)|'''[\\s\\S]*?(?:'''|$)|" + DQ + "|" + SQ + ")"],
      ["k", words("False None True and as assert async await break class continue def del elif else except " +
        "finally for from global if import in is lambda nonlocal not or pass raise return try while with yield match case self")],
      ["n", NUMBER]
    ],
    js: [
      ["c", "\\/\\/.*|" + C_COMMENT],
      ["s", DQ + "|" + SQ + "|`(?:\\\\[\\s\\S]|[^\\\\`])*`?"],
      ["k", words("break case catch class const continue debugger default delete do else export extends false " +
        "finally for from function if import in instanceof let new null of return super switch this throw true try " +
        "typeof undefined var void while yield async await static interface type")],
      ["n", NUMBER]
    ],
    json: [
      ["s", DQ],
      ["k", words("true false null")],
      ["n", "-?" + NUMBER]
    ],
    bash: [
      ["c", "(?:^|[ \\t\\n])#.*"],
      ["s", '"(?:\\\\[\\s\\S]|[^"\\\\])*"?|\'[^\']*\'?'],
      ["k", words("if then else elif fi for while until do done case esac in function return local export " +
        "echo exit set unset source readonly declare cd sudo")],
      ["n", "\\b\\d+\\b"]
    ],
    sql: [
      ["c", "--.*|" + C_COMMENT],
      ["s", "'(?:''|[^'])*'?"],
      ["k", words("select from where and or not insert into values update set delete create table drop alter " +
        "index primary key foreign references join left right inner outer full on as group by order having limit " +
        "offset distinct union all null is in like between exists case when then else end begin commit rollback " +
        "returning with default unique asc desc count sum avg min max")],
      ["n", NUMBER]
    ],
    html: [
      ["c", "<!--[\\s\\S]*?(?:-->|$)"],
      ["k", "<\\/?[A-Za-z][\\w:.-]*|\\/?>"],
      ["a", "[\\w:.-]+(?==)"],
      ["s", '"[^"]*"|\'[^\']*\'']
    ]
  };

  var ALIASES = {
    py: "python", python3: "python", javascript: "js", jsx: "js", ts: "js", typescript: "js", mjs: "js",
    node: "js", jsonl: "json", sh: "bash", shell: "bash", zsh: "bash", console: "bash", postgresql: "sql",
    mysql: "sql", sqlite: "sql", xml: "html", htm: "html", svg: "html"
  };

  var compiled = {};

  function pattern(language) {
    if (!compiled[language]) {
      var rules = RULES[language];
      var flags = language === "sql" ? "gi" : "g"; // no "m": an unclosed comment runs to the end
      compiled[language] = {
        classes: rules.map(function (rule) { return rule[0]; }),
        re: new RegExp(rules.map(function (rule) { return "(" + rule[1] + ")"; }).join("|"), flags)
      };
    }
    return compiled[language];
  }

  function languageOf(name) {
    var key = String(name || "").toLowerCase();
    key = ALIASES[key] || key;
    return Object.prototype.hasOwnProperty.call(RULES, key) ? key : null;
  }

  function highlight(code, name) {
    var language = languageOf(name);
    if (!language) {
      return escapeHtml(code);
    }
    var p = pattern(language);
    var out = [];
    var last = 0;
    var match;
    p.re.lastIndex = 0;
    while ((match = p.re.exec(code)) !== null) {
      if (!match[0]) {
        p.re.lastIndex += 1; // an empty match ("$" at a line end): move on
        continue;
      }
      var group = 1;
      while (match[group] === undefined) {
        group += 1;
      }
      out.push(escapeHtml(code.slice(last, match.index)));
      out.push('<span class="pyhub-tok-' + p.classes[group - 1] + '">' + escapeHtml(match[0]) + "</span>");
      last = match.index + match[0].length;
    }
    out.push(escapeHtml(code.slice(last)));
    return out.join("");
  }

  window.PyhubHighlight = { highlight: highlight, languageOf: languageOf };
})();
