import { useMemo } from "react";
import {
  Chart as ChartJS,
  Legend as ChartLegend,
  LinearScale,
  LineController,
  LineElement,
  PointElement,
  ScatterController,
  Tooltip,
  type ChartData,
  type ChartOptions,
  type Plugin,
  type PointStyle,
} from "chart.js";
import { Line, Scatter } from "react-chartjs-2";
import type { Mode, SamplerConfig, TokenEvent } from "../generated/events";
import { count, formatNumber, stateColour, stateLabel, type StateTable } from "../format";
import type { Run } from "../store";
import { useThemeColours } from "../theme";

ChartJS.register(LinearScale, PointElement, LineElement, LineController, ScatterController, Tooltip, ChartLegend);

export interface Selection {
  mode: Mode;
  index: number;
}

interface Props {
  runs: Run[];
  table: StateTable;
  thresholds: Pick<SamplerConfig, "low_ent" | "low_vent" | "med_ent" | "high_ent" | "high_vent"> | null;
  selected: Selection | null;
  onSelect: (sel: Selection) => void;
}

const POINT_STYLES: PointStyle[] = ["circle", "triangle", "rect"];

type XY = { x: number; y: number };

function niceMax(values: number[]): number {
  return Math.ceil(Math.max(1, ...values.filter(Number.isFinite)) * 1.05);
}

const pointColours = (tokens: TokenEvent[], table: StateTable) => tokens.map((t) => stateColour(t.state, table));

function radii(tokens: TokenEvent[], run: Run, sel: Selection | null, base: number): number[] {
  return tokens.map((_, i) => (sel && sel.mode === run.mode && sel.index === i ? base + 4 : base));
}

// Names of the threshold lines, drawn on the canvas next to each line. A static plugin that
// reads its inputs from the chart's options, so it sees thresholds loaded after mounting.
interface LabelOptions {
  thresholds: Props["thresholds"];
  colour: string;
}
const thresholdLabels: Plugin<"scatter", LabelOptions> = {
  id: "thresholdLabels",
  afterDatasetsDraw(chart, _args, opts) {
    const t = opts.thresholds;
    if (!t) return;
    const { ctx, chartArea, scales } = chart;
    ctx.save();
    ctx.fillStyle = opts.colour;
    ctx.font = "11px system-ui, sans-serif";
    ctx.textAlign = "right";
    for (const k of ["low_ent", "med_ent", "high_ent"] as const) {
      const x = scales.x.getPixelForValue(t[k]);
      if (x < chartArea.left || x > chartArea.right) continue;
      ctx.save();
      ctx.translate(x - 3, chartArea.top + 4);
      ctx.rotate(-Math.PI / 2);
      ctx.fillText(k, 0, 0);
      ctx.restore();
    }
    for (const k of ["low_vent", "high_vent"] as const) {
      const y = scales.y.getPixelForValue(t[k]);
      if (y >= chartArea.top && y <= chartArea.bottom) ctx.fillText(k, chartArea.right - 4, y - 4);
    }
    ctx.restore();
  },
};

// Chart instances by id, for debugging and for the e2e test (which clicks a scatter point).
(globalThis as { __mlxEntropixCharts?: unknown }).__mlxEntropixCharts = ChartJS.instances;

export function Charts({ runs, table, thresholds, selected, onSelect }: Props) {
  const theme = useThemeColours();

  const clickHandler =
    (datasetModes: (Mode | null)[]): ChartOptions["onClick"] =>
    (_event, elements) => {
      const el = elements.find((e) => datasetModes[e.datasetIndex] != null);
      if (el) onSelect({ mode: datasetModes[el.datasetIndex] as Mode, index: el.index });
    };

  const tooltipLabel = (datasetModes: (Mode | null)[]) => (ctx: { datasetIndex: number; dataIndex: number }) => {
    const mode = datasetModes[ctx.datasetIndex];
    const run = runs.find((r) => r.mode === mode);
    const t = run?.tokens[ctx.dataIndex];
    if (!t) return "";
    return `${mode} #${t.index} ${JSON.stringify(t.text)}: ${stateLabel(t.state, table)} (H ${formatNumber(
      t.metrics.entropy,
    )}, V ${formatNumber(t.metrics.varentropy)})`;
  };

  // Line charts: entropy (solid) and varentropy (dashed) per token, points coloured by state.
  // Several runs (compare) get one small chart each on shared axes, not four overlaid series.
  const lines = useMemo(() => {
    const xMax = Math.max(1, ...runs.map((r) => r.tokens.length - 1));
    const yMax = niceMax(runs.flatMap((r) => r.tokens.flatMap((t) => [t.metrics.entropy, t.metrics.varentropy])));
    return runs.map((run, r) => {
      const colours = pointColours(run.tokens, table);
      const common = {
        pointBackgroundColor: colours,
        pointBorderColor: colours,
        pointRadius: radii(run.tokens, run, selected, 2.5),
        pointHoverRadius: 6,
        pointStyle: POINT_STYLES[r % POINT_STYLES.length],
        borderWidth: 1.5,
        tension: 0,
      };
      const datasets = [
        {
          ...common,
          label: "entropy (bits)",
          data: run.tokens.map((t, i) => ({ x: i, y: t.metrics.entropy })),
          borderColor: theme.line1,
        },
        {
          ...common,
          label: "varentropy (bits²)",
          data: run.tokens.map((t, i) => ({ x: i, y: t.metrics.varentropy })),
          borderColor: theme.line2,
          borderDash: [5, 3],
        },
      ];
      return { mode: run.mode, data: { datasets } as ChartData<"line", XY[]>, modes: [run.mode, run.mode], xMax, yMax };
    });
  }, [runs, table, selected, theme]);

  // Scatter: each token in the (entropy, varentropy) plane plus the quadrant thresholds.
  const scatter = useMemo(() => {
    const modes: (Mode | null)[] = [];
    const datasets: ChartData<"scatter", XY[]>["datasets"] = runs.map((run, r) => {
      const colours = pointColours(run.tokens, table);
      modes.push(run.mode);
      return {
        label: `${run.mode} tokens`,
        data: run.tokens.map((t) => ({ x: t.metrics.entropy, y: t.metrics.varentropy })),
        pointBackgroundColor: colours.map((c) => c + "cc"),
        pointBorderColor: colours,
        pointRadius: radii(run.tokens, run, selected, 4),
        pointHoverRadius: 7,
        pointStyle: POINT_STYLES[r % POINT_STYLES.length],
        backgroundColor: theme.muted,
        borderColor: theme.muted,
      };
    });
    const xs = runs.flatMap((r) => r.tokens.map((t) => t.metrics.entropy));
    const ys = runs.flatMap((r) => r.tokens.map((t) => t.metrics.varentropy));
    const t = thresholds;
    const xMax = niceMax([...xs, ...(t ? [t.low_ent, t.med_ent, t.high_ent] : [])]);
    const yMax = niceMax([...ys, ...(t ? [t.low_vent, t.high_vent] : [])]);
    if (t) {
      // One two-point line dataset per threshold; only the first is named in the legend.
      const lines: XY[][] = [
        ...[t.low_ent, t.med_ent, t.high_ent].map((x) => [{ x, y: 0 }, { x, y: yMax }]),
        ...[t.low_vent, t.high_vent].map((y) => [{ x: 0, y }, { x: xMax, y }]),
      ];
      lines.forEach((data, i) => {
        modes.push(null);
        datasets.push({
          label: i === 0 ? "thresholds" : "",
          data,
          showLine: true,
          borderColor: theme.threshold,
          backgroundColor: theme.threshold,
          borderDash: [4, 4],
          borderWidth: 1,
          pointRadius: 0,
          pointHoverRadius: 0,
        });
      });
    }
    return { data: { datasets } as ChartData<"scatter", XY[]>, modes, xMax, yMax };
  }, [runs, table, selected, thresholds, theme]);

  const axis = (title: string, max?: number) => ({
    type: "linear" as const,
    min: 0,
    max,
    title: { display: true, text: title, color: theme.fg },
    ticks: { color: theme.muted },
    grid: { color: theme.grid },
  });
  const plugins = (modes: (Mode | null)[], pointLegend: boolean) => ({
    legend: {
      labels: {
        color: theme.fg,
        boxWidth: pointLegend ? 9 : 18,
        boxHeight: pointLegend ? 9 : 12,
        usePointStyle: pointLegend,
        filter: (item: { text: string }) => item.text !== "",
        // Token datasets are many colours: show their point shape in a neutral colour.
        generateLabels: (chart: ChartJS) =>
          ChartJS.defaults.plugins.legend.labels.generateLabels(chart).map((item) =>
            pointLegend && modes[item.datasetIndex ?? -1] != null
              ? { ...item, fillStyle: theme.muted, strokeStyle: theme.muted, pointStyle: POINT_STYLES[item.datasetIndex ?? 0] }
              : pointLegend
                ? { ...item, pointStyle: "line" as const }
                : item,
          ),
      },
    },
    tooltip: {
      filter: (item: { datasetIndex: number }) => modes[item.datasetIndex] != null,
      callbacks: { label: tooltipLabel(modes) },
    },
  });

  const multiple = lines.length > 1;
  const lineOptions = (l: (typeof lines)[number]): ChartOptions<"line"> => ({
    animation: false,
    maintainAspectRatio: false,
    parsing: false,
    normalized: true,
    interaction: { mode: "nearest", intersect: true },
    scales: { x: axis("token", l.xMax), y: axis("bits / bits²", multiple ? l.yMax : undefined) },
    plugins: plugins(l.modes, false) as ChartOptions<"line">["plugins"],
    onClick: clickHandler(l.modes) as ChartOptions<"line">["onClick"],
  });
  const scatterOptions: ChartOptions<"scatter"> = {
    animation: false,
    maintainAspectRatio: false,
    interaction: { mode: "nearest", intersect: true },
    scales: { x: axis("entropy (bits)", scatter.xMax), y: axis("varentropy (bits²)", scatter.yMax) },
    plugins: {
      ...plugins(scatter.modes, true),
      thresholdLabels: { thresholds, colour: theme.threshold },
    } as ChartOptions<"scatter">["plugins"],
    onClick: clickHandler(scatter.modes) as ChartOptions<"scatter">["onClick"],
  };

  const n = runs.reduce((a, r) => a + r.tokens.length, 0);
  return (
    <div className="charts">
      <figure className="chart panel" data-testid="line-charts">
        <figcaption>Entropy and varentropy per token{multiple ? " (one chart per mode, same axes)" : ""}</figcaption>
        {(lines.length ? lines : [{ mode: null, data: { datasets: [] } as ChartData<"line", XY[]>, modes: [], xMax: 1, yMax: 1 }]).map(
          (l) => (
            <div key={l.mode ?? "empty"} className={multiple ? "chart-multiple" : undefined}>
              {multiple && <h3 className="chart-mode">{l.mode}</h3>}
              <div className={multiple ? "chart-box small" : "chart-box"} data-testid={l.mode ? `line-${l.mode}` : undefined}>
                <Line
                  data={l.data}
                  options={lineOptions(l as (typeof lines)[number])}
                  role="img"
                  aria-label={`Line chart of entropy and varentropy${l.mode ? ` for ${l.mode}` : ""}, ${count(
                    runs.find((r) => r.mode === l.mode)?.tokens.length ?? 0,
                    "token",
                  )}; click a point to inspect its token.`}
                />
              </div>
            </div>
          ),
        )}
      </figure>
      <figure className="chart panel">
        <figcaption>Entropy–varentropy plane (dashed: state thresholds)</figcaption>
        <div className="chart-box" data-testid="scatter">
          <Scatter
            data={scatter.data}
            options={scatterOptions}
            plugins={[thresholdLabels]}
            role="img"
            aria-label={`Scatter of ${count(n, "token")} by entropy and varentropy with the state thresholds; click a point to inspect its token.`}
          />
        </div>
      </figure>
    </div>
  );
}
