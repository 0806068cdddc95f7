import type { PresetInfo } from "../api";

interface Props {
  presets: Record<string, PresetInfo>;
  value: string; // "" = the server's default policy
  onChange: (name: string) => void;
}

/** Entropix preset: a named policy on the accuracy-diversity frontier, and what it trades. */
export function PresetSelect({ presets, value, onChange }: Props) {
  const names = Object.keys(presets);
  if (names.length === 0) return null;
  const active = value ? presets[value] : undefined;
  return (
    <div className="field preset" data-testid="preset">
      <label htmlFor="sampler-preset" data-key="preset" title="preset · a named entropix policy (precise, balanced, creative)">
        Entropix preset
      </label>
      <select id="sampler-preset" value={value} onChange={(e) => onChange(e.target.value)}>
        <option value="">default (the shipped policy)</option>
        {names.map((n) => (
          <option key={n} value={n}>
            {n}
          </option>
        ))}
      </select>
      <p className="muted small" data-testid="preset-trade">
        {active ? active.summary : "The server's default entropix policy."} Applies to entropix mode; settings changed below
        still win.
      </p>
    </div>
  );
}
