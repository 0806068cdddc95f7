import type { SamplerConfig } from "../generated/events";
import { SAMPLER_GROUPS, type Edits, type Overrides } from "../sampler";

interface Props {
  defaults: SamplerConfig | null;
  edits: Edits;
  overrides: Overrides;
  onEdit: (key: keyof SamplerConfig, value: string | null) => void;
  onReset: () => void;
}

/** Every sampler knob from /api/config, editable; changed values are sent as overrides. */
export function SamplerPanel({ defaults, edits, overrides, onEdit, onReset }: Props) {
  const changed = overrides.sampler ? Object.keys(overrides.sampler).length : 0;
  return (
    <details className="sampler panel">
      <summary>
        Sampler settings{" "}
        {changed > 0 && <span className="badge">{changed} changed</span>}
      </summary>
      {!defaults ? (
        <p className="muted small">Settings load from the server's /api/config.</p>
      ) : (
        <>
          {SAMPLER_GROUPS.map((group) => {
            const keys = (Object.keys(defaults) as (keyof SamplerConfig)[]).filter((k) => group.match(k));
            return (
              <fieldset key={group.title}>
                <legend>{group.title}</legend>
                <div className="sampler-grid">
                  {keys.map((k) => {
                    const def = defaults[k];
                    const id = `sampler-${k}`;
                    const error = overrides.errors[k];
                    const isChanged = overrides.sampler ? k in overrides.sampler : false;
                    if (k === "clarifying_token") {
                      const value = k in edits ? edits[k] : (def as string | null);
                      return (
                        <div key={k} className={isChanged ? "field changed" : "field"}>
                          <label htmlFor={id}>clarifying token</label>
                          <input
                            id={id}
                            type="text"
                            value={value ?? ""}
                            disabled={value === null}
                            onChange={(e) => onEdit(k, e.target.value)}
                          />
                          <label className="inline small">
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
                    const value = k in edits ? (edits[k] ?? "") : String(def);
                    return (
                      <div key={k} className={isChanged ? "field changed" : "field"}>
                        <label htmlFor={id} title={`default ${String(def)}`}>
                          {k}
                        </label>
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
                  })}
                </div>
              </fieldset>
            );
          })}
          <button type="button" className="secondary" onClick={onReset} disabled={Object.keys(edits).length === 0}>
            Reset to defaults
          </button>
        </>
      )}
    </details>
  );
}
