import { STATES } from "../generated/events";
import type { StateTable } from "../format";

/** The five states: colour swatch, label and what it means. */
export function Legend({ table, counts }: { table: StateTable; counts?: Record<string, number> }) {
  return (
    <ul className="legend" aria-label="Legend: token colours by state">
      {STATES.map((s) => (
        <li key={s} className="legend-item" data-state={s} title={table[s].description}>
          <span className="swatch" style={{ backgroundColor: table[s].colour }} aria-hidden="true" />
          <span className="legend-label">{table[s].label}</span>
          {counts && <span className="legend-count">{counts[s] ?? 0}</span>}
        </li>
      ))}
    </ul>
  );
}
