// qmoi dashboard: shows times in the viewer's own zone. No other behaviour
// lives here; live updates are htmx's SSE extension.
(function () {
  "use strict";
  function localize(root) {
    var fmt = new Intl.DateTimeFormat(undefined, {
      year: "numeric", month: "short", day: "numeric",
      hour: "2-digit", minute: "2-digit", timeZoneName: "short"
    });
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      var t = new Date(el.getAttribute("datetime"));
      if (!isNaN(t.getTime())) {
        el.title = el.textContent;
        el.textContent = fmt.format(t);
      }
    });
  }
  document.addEventListener("DOMContentLoaded", function () { localize(document); });
  document.addEventListener("htmx:afterSettle", function (e) { localize(e.target); });
})();
