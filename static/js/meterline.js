// Meterline's only script: small enhancements. Every page works and reads without it.
// Chart data come from <script type="application/json"> blocks ({{ data|json_script:"id" }}),
// never from inline code, so the strict Content-Security-Policy holds.
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target.matches && target.matches("select[data-autosubmit]") && target.form) {
      target.form.submit();
    }
  });

  // <form data-confirm="Revoke this key?">: ask before a destructive POST.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);

  // <button data-copy="element-id">: copy that element's text (the new API key) to the clipboard.
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("button[data-copy]");
    if (!button) { return; }
    var source = document.getElementById(button.getAttribute("data-copy"));
    if (!source || !navigator.clipboard) { return; }
    navigator.clipboard.writeText(source.textContent.trim()).then(function () {
      button.textContent = "Copied";
    });
  });

  var PALETTE = ["#4353d8", "#22a6b3", "#f59e0b", "#e0607e", "#7c3aed", "#10b981", "#64748b", "#ef4444"];

  function usd(micros) {
    return micros / 1e6;
  }

  // Charts show totals (a day's, a model's): cents, as every page does (docs/billing-rules.md).
  function money(value, places) {
    var digits = places || 2;
    return "$" + value.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
  }

  function shortDate(iso) {
    var parts = iso.split("-");
    var months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    return parseInt(parts[2], 10) + " " + months[parseInt(parts[1], 10) - 1];
  }

  var base = {
    responsive: true,
    maintainAspectRatio: false,
    animation: false,
    interaction: { mode: "index", intersect: false },
    plugins: { legend: { labels: { boxWidth: 12, boxHeight: 12 } } },
  };

  var builders = {
    // Overview: daily usage as bars (minutes on voice plans, else cost), the other as a line.
    trend: function (data) {
      var cost = data.cost_micros.map(usd);
      var hasCost = cost.some(function (v) { return v !== 0; });
      var byMinutes = data.minutes && data.minutes.length;
      var bars = byMinutes
        ? { label: "Minutes", data: data.minutes, unit: "min" }
        : { label: "Cost (USD)", data: cost, unit: "usd" };
      var datasets = [{
        type: "bar", label: bars.label, data: bars.data, unit: bars.unit,
        backgroundColor: "rgba(67, 83, 216, 0.78)", borderRadius: 3, yAxisID: "y",
      }];
      var scales = {
        x: { grid: { display: false }, ticks: { maxRotation: 0, autoSkipPadding: 12 } },
        y: { beginAtZero: true, ticks: { callback: function (v) { return bars.unit === "usd" ? money(v, 2) : v; } } },
      };
      if (byMinutes && hasCost) {
        datasets.push({
          type: "line", label: "Cost (USD)", data: cost, unit: "usd", borderColor: "#22a6b3",
          backgroundColor: "#22a6b3", cubicInterpolationMode: "monotone", pointRadius: 0, yAxisID: "y1",
        });
        scales.y1 = {
          beginAtZero: true, position: "right", grid: { drawOnChartArea: false },
          ticks: { callback: function (v) { return money(v, 2); } },
        };
      }
      return {
        data: { labels: data.labels.map(shortDate), datasets: datasets },
        options: Object.assign({}, base, {
          scales: scales,
          plugins: Object.assign({}, base.plugins, {
            tooltip: { callbacks: { label: function (c) {
              var v = c.parsed.y;
              return c.dataset.label + ": " + (c.dataset.unit === "usd" ? money(v) : v + " min");
            } } },
          }),
        }),
      };
    },
    // Usage: daily cost stacked by component.
    stacked: function (data) {
      return {
        type: "bar",
        data: {
          labels: data.labels.map(shortDate),
          datasets: data.series.map(function (s, i) {
            return { label: s.label, data: s.cost_micros.map(usd), backgroundColor: PALETTE[i % PALETTE.length], borderRadius: 2 };
          }),
        },
        options: Object.assign({}, base, {
          scales: {
            x: { stacked: true, grid: { display: false }, ticks: { maxRotation: 0, autoSkipPadding: 12 } },
            y: { stacked: true, beginAtZero: true, ticks: { callback: function (v) { return money(v, 2); } } },
          },
          plugins: Object.assign({}, base.plugins, {
            tooltip: { callbacks: { label: function (c) { return c.dataset.label + ": " + money(c.parsed.y); } } },
          }),
        }),
      };
    },
    // Usage: cost by model or component.
    doughnut: function (data) {
      return {
        type: "doughnut",
        data: {
          labels: data.labels,
          datasets: [{ data: data.cost_micros.map(usd), backgroundColor: PALETTE, borderWidth: 1 }],
        },
        options: Object.assign({}, base, {
          interaction: { mode: "nearest", intersect: true },
          plugins: Object.assign({}, base.plugins, {
            legend: { position: "right", labels: { boxWidth: 12, boxHeight: 12 } },
            tooltip: { callbacks: { label: function (c) { return c.label + ": " + money(c.parsed); } } },
          }),
        }),
      };
    },
  };

  function drawCharts(root) {
    if (typeof window.Chart === "undefined") {
      return;
    }
    var canvases = (root || document).querySelectorAll("canvas[data-chart]");
    Array.prototype.forEach.call(canvases, function (canvas) {
      if (window.Chart.getChart(canvas)) {
        return;
      }
      var source = document.getElementById(canvas.getAttribute("data-source"));
      var build = builders[canvas.getAttribute("data-chart")];
      if (!source || !build) {
        return;
      }
      var config = build(JSON.parse(source.textContent));
      config.type = config.type || "bar";
      new window.Chart(canvas, config);
      canvas.setAttribute("data-drawn", "true");
    });
  }

  document.addEventListener("DOMContentLoaded", function () { drawCharts(document); });
  // Fragments swapped in by htmx may bring charts of their own.
  document.addEventListener("htmx:load", function (event) { drawCharts(event.target); });
})();
