// mcc console: the live feed of the overview. The server sends each new
// event over Server-Sent Events with its sequence number as the SSE id;
// after a drop the browser reconnects with Last-Event-ID and the server
// sends everything after it, so nothing is lost. Rows are drawn once per
// animation frame and the table keeps the newest maxRows; the line above
// the table says how many arrived and how many were drawn, so a burst
// that the page samples says so instead of dropping events silently.
// While events arrive, the charts are fetched again from the server at
// most every chartEvery ms (they are drawn from the per-minute rollups,
// which the feed does not carry).
(function () {
  "use strict";
  // A blocked resource or inline code means the page and its CSP
  // disagree: say so where the browser tests (and operators) look.
  document.addEventListener("securitypolicyviolation", function (e) {
    console.error("CSP violation: " + e.violatedDirective + " blocked " + (e.blockedURI || "inline code"));
  });
  var live = document.getElementById("live");
  if (!live || !window.EventSource) { return; }
  var maxRows = 100;
  var tbody = document.getElementById("live-rows");
  var status = document.getElementById("live-status");
  var count = document.getElementById("live-count");
  var charts = document.getElementById("charts");
  var chartEvery = 5000, chartTimer = null, chartFetching = false, chartUpdates = 0;
  // The total shown is the server's (at render or at the last chart
  // fetch) plus what the feed brought since.
  var totalBase = 0, receivedAtBase = 0;
  var seen = new Set();
  Array.prototype.forEach.call(tbody.querySelectorAll("tr[data-id]"), function (tr) { seen.add(tr.getAttribute("data-id")); });
  var queue = [];
  var received = 0, drawn = 0, scheduled = false;

  function cell(tr, text) {
    var td = document.createElement("td");
    td.textContent = text;
    tr.appendChild(td);
    return td;
  }
  function linkCell(tr, text, param, value) {
    var td = document.createElement("td");
    if (value) {
      var a = document.createElement("a");
      var u = new URL("/console/events", location.href);
      u.searchParams.set(param, value);
      a.href = u.pathname + u.search;
      a.textContent = text;
      td.appendChild(a);
    }
    tr.appendChild(td);
  }
  function row(e) {
    var tr = document.createElement("tr");
    tr.setAttribute("data-id", e.id);
    tr.className = "new";
    cell(tr, e.time.replace("T", " ").replace(/\.\d+Z$|Z$/, ""));
    linkCell(tr, e.reason, "reason", e.reason);
    cell(tr, e.action);
    cell(tr, e.fusionSet);
    linkCell(tr, e.clientIP, "clientIP", e.clientIP);
    linkCell(tr, e.deviceID, "deviceId", e.deviceID);
    cell(tr, e.externalID);
    cell(tr, String(e.score));
    return tr;
  }
  function draw() {
    scheduled = false;
    // Only the newest maxRows of a burst can stay in the table.
    var batch = queue.slice(-maxRows);
    queue = [];
    var frag = document.createDocumentFragment();
    for (var i = batch.length - 1; i >= 0; i--) { frag.appendChild(row(batch[i])); }
    tbody.insertBefore(frag, tbody.firstChild);
    drawn += batch.length;
    while (tbody.rows.length > maxRows) { tbody.deleteRow(tbody.rows.length - 1); }
    count.textContent = received + " new since the page opened" + (drawn < received ? " (" + drawn + " drawn, the rest in Events)" : "");
    showTotal();
  }
  function showTotal() {
    var total = document.getElementById("total");
    if (total) { total.textContent = String(totalBase + received - receivedAtBase); }
  }
  function takeTotal() {
    var total = document.getElementById("total");
    totalBase = total ? Number(total.textContent) : 0;
  }
  takeTotal();
  function refreshCharts() {
    chartTimer = null;
    if (chartFetching) { chartTimer = setTimeout(refreshCharts, chartEvery); return; }
    chartFetching = true;
    var at = received;
    fetch(charts.getAttribute("data-src"), { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { if (!r.ok) { throw new Error("charts: " + r.status); } return r.text(); })
      .then(function (html) {
        charts.innerHTML = html;
        takeTotal();
        receivedAtBase = at;
        showTotal();
        chartUpdates++;
        charts.setAttribute("data-updates", String(chartUpdates));
      })
      .catch(function () { /* the next event schedules another try */ })
      .then(function () { chartFetching = false; });
  }

  var es = new EventSource(live.getAttribute("data-stream"));
  es.addEventListener("open", function () { status.textContent = "live"; });
  es.addEventListener("error", function () { status.textContent = "reconnecting…"; });
  es.addEventListener("threat", function (m) {
    var e;
    try { e = JSON.parse(m.data); } catch (err) { return; }
    // Only the rows rendered with the page can come again (the feed
    // starts at the number the page was rendered at); the feed itself
    // sends each number once, so seen stays small.
    if (seen.has(e.id)) { return; }
    received++;
    queue.push(e);
    // A hidden tab draws no frames: keep only what the table could show.
    if (queue.length > 2 * maxRows) { queue = queue.slice(-maxRows); }
    if (!scheduled) { scheduled = true; requestAnimationFrame(draw); }
    if (charts && !chartTimer) { chartTimer = setTimeout(refreshCharts, chartEvery); }
  });
})();
