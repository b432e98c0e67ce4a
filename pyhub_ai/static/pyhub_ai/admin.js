/* pyhub_ai admin: renders the (escaped) text of AI messages as Markdown, like the chat page. */
(function () {
  "use strict";

  function render() {
    if (!window.PyhubMarkdown) {
      return;
    }
    document.querySelectorAll("[data-pyhub-markdown]").forEach(function (el) {
      el.innerHTML = window.PyhubMarkdown.render(el.textContent);
      el.removeAttribute("data-pyhub-markdown");
      el.classList.add("pyhub-admin-markdown");
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", render);
  } else {
    render();
  }
})();
