import { SAMPLER_CHOICES, type SamplerConfig } from "../generated/events";
import type { Edits, Overrides } from "../sampler";
import { fieldLabel, fieldTooltip, groupFields } from "../samplerFields";
import type { PresetInfo } from "../api";
import { PresetSelect } from "./PresetSelect";

interface Props {
  defaults: SamplerConfig | null;
  edits: Edits;
  overrides: Overrides;
  onEdit: (key: keyof SamplerConfig, value: string | null) => void;
  onReset: () => void;
  presets?: Record<string, PresetInfo>;
  preset?: string;
  onPreset?: (name: string) => void;
}

type Key = keyof SamplerConfig;

/** A field's label: words, then the unit; the raw config key and its description as tooltip. */
function FieldLabel({ k, htmlFor, def }: { k: Key; htmlFor: string; def: unknown }) {
  const { label, unit } = fieldLabel(k);
  return (
    <label htmlFor={htmlFor} title={fieldTooltip(k, def)} data-key={k}>
      {label}
      {unit && <span className="unit muted"> ({unit})</span>}
    </label>
  );
}

interface FieldProps {
  k: Key;
  def: SamplerConfig[Key];
  edits: Edits;
  error?: string;
  changed: boolean;
  onEdit: Props["onEdit"];
}

function Field({ k, def, edits, error, changed, onEdit }: FieldProps) {
  const id = `sampler-${k}`;
  const cls = changed ? "field changed" : "field";
  const edited = k in edits;
  if (k === "clarifying_token") {
    const value = edited ? edits[k] : (def as string | null);
    return (
      <div className={cls}>
        <FieldLabel k={k} htmlFor={id} def={def} />
        <input id={id} type="text" value={value ?? ""} disabled={value === null} onChange={(e) => onEdit(k, e.target.value)} />
        <label className="inline small field-extra">
          <input
            type="checkbox"
            checked={value === null}
            onChange={(e) => onEdit(k, e.target.checked ? null : ((def as string | null) ?? " ..."))}
          />{" "}
          none
        </label>
      </div>
    );
  }
  // a null default (no limit) shows empty; a list (greedy_states) as comma-separated names
  const value = edited ? (edits[k] ?? "") : Array.isArray(def) ? def.join(", ") : String(def ?? "");
  const choices = SAMPLER_CHOICES[k];
  if (typeof def === "boolean") {
    return (
      <div className={cls}>
        <FieldLabel k={k} htmlFor={id} def={def} />
        <input id={id} type="checkbox" checked={value === "true"} onChange={(e) => onEdit(k, String(e.target.checked))} />
      </div>
    );
  }
  if (choices) {
    return (
      <div className={cls}>
        <FieldLabel k={k} htmlFor={id} def={def} />
        <select id={id} value={value} onChange={(e) => onEdit(k, e.target.value)}>
          {choices.map((c) => (
            <option key={c} value={c}>
              {c}
            </option>
          ))}
        </select>
      </div>
    );
  }
  return (
    <div className={cls}>
      <FieldLabel k={k} htmlFor={id} def={def} />
      <input
        id={id}
        type="text"
        inputMode="decimal"
        value={value}
        aria-invalid={error ? true : undefined}
        aria-describedby={error ? `${id}-err` : undefined}
        onChange={(e) => onEdit(k, e.target.value)}
      />
      {error && (
        <span id={`${id}-err`} className="field-error">
          {error}
        </span>
      )}
    </div>
  );
}

/** Every sampler knob from /api/config, editable; changed values are sent as overrides. */
export function SamplerPanel({ defaults, edits, overrides, onEdit, onReset, presets, preset = "", onPreset }: Props) {
  const changed = overrides.sampler ? Object.keys(overrides.sampler).length : 0;
  return (
    <details className="sampler panel">
      <summary>
        Sampler settings {changed > 0 && <span className="badge">{changed} changed</span>}
        {preset && <span className="badge">preset {preset}</span>}
      </summary>
      {presets && onPreset && <PresetSelect presets={presets} value={preset} onChange={onPreset} />}
      {!defaults ? (
        <p className="muted small">Settings load from the server's /api/config.</p>
      ) : (
        <>
          <p className="muted small">Hover a name for its config key and meaning.</p>
          {groupFields(Object.keys(defaults)).map((group) => (
            <fieldset key={group.title}>
              <legend>{group.title}</legend>
              <div className="sampler-grid">
                {group.keys.map((k) => (
                  <Field
                    key={k}
                    k={k}
                    def={defaults[k]}
                    edits={edits}
                    error={overrides.errors[k]}
                    changed={overrides.sampler ? k in overrides.sampler : false}
                    onEdit={onEdit}
                  />
                ))}
              </div>
            </fieldset>
          ))}
          <button type="button" className="secondary" onClick={onReset} disabled={Object.keys(edits).length === 0}>
            Reset to defaults
          </button>
        </>
      )}
    </details>
  );
}
