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

  function top(values) {
    return Math.max.apply(null, values.concat([1]));
  }

  function points(values) {
    var high = top(values);
    var step = 400 / (MAX - 1);
    if (values.length === 1) { values = [values[0], values[0]]; }  // one sample: a short flat line
    return values.map(function (v, i) {
      return (i * step).toFixed(1) + "," + (98 - (96 * v) / high).toFixed(1);
    }).join(" ");
  }

  function setText(id, text) {
    var el = document.getElementById(id);
    if (el) { el.textContent = text; }
  }

  function draw() {
    var backlog = samples.map(function (s) { return s.backlog; });
    var ages = samples.map(function (s) { return s.age; });
    backlogLine.setAttribute("points", points(backlog));
    ageLine.setAttribute("points", points(ages));
    setText("trend-backlog-max", String(top(backlog)));
    setText("trend-age-max", top(ages).toFixed(1));
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
