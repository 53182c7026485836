// The pages' charts: each <figure data-chart> holds its data in a JSON block (data, not code,
// so the CSP allows it); this module draws it with plotly.js (served by the hub from the
// plotly package, loaded before this module). Hover shows values, the legend toggles series,
// dragging zooms on time (double-click resets). Charts follow the theme. A chart with no value
// (data.empty) is not drawn, plotly.js would show an empty plot over its default range
// (January to November 2000): its figure says there is no data for the period instead.

const FORMATS = {
  count: { tickformat: ",d", hover: "%{y:,}" },
  percent: { tickformat: ".0%", hover: "%{y:.1%}" },
  usd: { tickformat: "$,.4~f", hover: "$%{y:,.4f}" },
  tokens: { tickformat: ".3~s", hover: "%{y:,}" },
  ms: { tickformat: ",.0f", ticksuffix: " ms", hover: "%{y:,.0f} ms" },
};

function palette() {
  const style = getComputedStyle(document.documentElement);
  const read = (name, fallback) => style.getPropertyValue(name).trim() || fallback;
  return { text: read("--text", "#222"), muted: read("--muted", "#666"), grid: read("--border", "#ddd") };
}

function traces(data) {
  const format = FORMATS[data.format] || FORMATS.count;
  return data.lines.map((line) => ({
    type: data.kind === "bar" ? "bar" : "scatter",
    mode: data.kind === "bar" ? undefined : "lines+markers",
    name: line.name,
    x: data.x,
    y: line.y,
    hovertemplate: `${format.hover}<extra>%{fullData.name}</extra>`,
  }));
}

function layout(data) {
  const colours = palette();
  const format = FORMATS[data.format] || FORMATS.count;
  const highest = Math.max(0, ...data.lines.flatMap((line) => line.y));
  // Counts are whole: no tick between 0 and 1 when little ran.
  const whole = data.format === "count" && highest < 5 ? { dtick: 1 } : {};
  const axis = { gridcolor: colours.grid, linecolor: colours.grid, zerolinecolor: colours.grid };
  return {
    autosize: true,
    uirevision: data.id, // a redraw with new data keeps the user's zoom and hidden series
    height: 280,
    margin: { l: 56, r: 16, t: 8, b: 40 },
    paper_bgcolor: "rgba(0,0,0,0)",
    plot_bgcolor: "rgba(0,0,0,0)",
    font: { color: colours.text, size: 12 },
    barmode: "stack",
    hovermode: "x unified",
    dragmode: "zoom",
    showlegend: true,
    legend: { orientation: "h", y: -0.2 },
    xaxis: { ...axis, type: "date", fixedrange: false },
    yaxis: { ...axis, tickformat: format.tickformat, ticksuffix: format.ticksuffix || "", rangemode: "tozero", fixedrange: true, ...whole },
  };
}

const CONFIG = {
  responsive: true,
  displaylogo: false,
  modeBarButtonsToRemove: ["lasso2d", "select2d", "toImage"],
};

function dataOf(figure) {
  const block = figure.querySelector("script[data-chart-data]");
  return block ? JSON.parse(block.textContent) : null;
}

// Draws every chart under root (again, with Plotly.react, when a chart is already drawn).
export function drawCharts(root = document) {
  if (!window.Plotly) return;
  for (const figure of root.querySelectorAll("[data-chart]")) {
    const data = dataOf(figure);
    const plot = figure.querySelector("[data-chart-plot]");
    if (!data || !plot) continue;
    const empty = figure.querySelector("[data-chart-empty]");
    if (empty) empty.hidden = !data.empty;
    plot.hidden = data.empty;
    if (data.empty) {
      window.Plotly.purge(plot);
      figure.dataset.drawn = "0";
      continue;
    }
    window.Plotly.react(plot, traces(data), layout(data), CONFIG);
    figure.dataset.drawn = String(data.lines.length);
  }
  document.body.dataset.charts = "drawn";
}

drawCharts();
new MutationObserver(() => drawCharts()).observe(document.documentElement, {
  attributes: true,
  attributeFilter: ["data-theme"],
});
