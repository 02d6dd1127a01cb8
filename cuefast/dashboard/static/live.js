// cuefast dashboard, live view: poll /dashboard/live.json every 3 s and extend two lines
// (backlog total, oldest outbox age) in the page's SVG. Plain JS, no library.
(function () {
  "use strict";
  var backlogLine = document.getElementById("trend-backlog");
  var ageLine = document.getElementById("trend-age");
  var now = document.getElementById("live-now");
  if (!backlogLine || !ageLine) { return; }
  var samples = [];
  var MAX = 60;

  function points(values) {
    var top = Math.max.apply(null, values.concat([1]));
    var step = values.length > 1 ? 400 / (MAX - 1) : 0;
    return values.map(function (v, i) {
      return (i * step).toFixed(1) + "," + (98 - (96 * v) / top).toFixed(1);
    }).join(" ");
  }

  function draw() {
    backlogLine.setAttribute("points", points(samples.map(function (s) { return s.backlog; })));
    ageLine.setAttribute("points", points(samples.map(function (s) { return s.age; })));
    var last = samples[samples.length - 1];
    if (last && now) {
      now.textContent = "backlog " + last.backlog + " · oldest outbox entry " + last.age.toFixed(1) +
        " s · lateness p99 " + (last.p99 === null ? "no samples yet" : "≤ " + last.p99 + " s") +
        " · " + samples.length + " sample" + (samples.length === 1 ? "" : "s");
    }
  }

  function poll() {
    fetch("/dashboard/live.json", { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (d) {
        if (!d || d.private) { return; }
        var b = d.backlog || {};
        samples.push({
          backlog: (b.cuefast_outbox_entries || 0) + (b.cuefast_retry_backlog || 0) + (b.cuefast_worker_claimable || 0),
          age: (d.ages && d.ages.cuefast_outbox_oldest_age_seconds) || 0,
          p99: d.lateness_p99
        });
        if (samples.length > MAX) { samples.shift(); }
        document.body.setAttribute("data-live-samples", String(samples.length));
        draw();
      })
      .catch(function () { /* the next poll tries again */ });
  }

  poll();
  window.setInterval(poll, 3000);
}());
