import type { FormEvent, KeyboardEvent } from "react";
import type { Prompt } from "../api";

export type UiMode = "entropix" | "normal" | "greedy" | "fork" | "compare";

export interface FormValues {
  prompt: string;
  system: string;
  maxTokens: string;
  seed: string;
  mode: UiMode;
}

interface Props {
  values: FormValues;
  prompts: Prompt[];
  running: boolean;
  onChange: (patch: Partial<FormValues>) => void;
  onRun: () => void;
  onStop: () => void;
  tokenLimit?: number; // the server's max_tokens limit
}

const MODES: { value: UiMode; label: string; hint: string }[] = [
  { value: "entropix", label: "entropix", hint: "sampling steered by the model's uncertainty" },
  { value: "normal", label: "normal", hint: "fixed temperature / top-p / top-k / min-p" },
  { value: "compare", label: "compare", hint: "entropix and normal side by side, same seed" },
  { value: "greedy", label: "greedy", hint: "always the most likely token" },
  { value: "fork", label: "fork", hint: "at a fork, try the top candidates as branches and keep the most confident" },
];

export function PromptForm({ values, prompts, running, onChange, onRun, onStop, tokenLimit = 4096 }: Props) {
  const submit = (e: FormEvent) => {
    e.preventDefault();
    if (!running) onRun();
  };
  const onPromptKey = (e: KeyboardEvent<HTMLTextAreaElement>) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      if (!running) onRun();
    }
  };
  const categories = [...new Set(prompts.map((p) => p.category || "other"))];
  return (
    <form className="prompt-form panel" onSubmit={submit} aria-label="Generation settings">
      <label htmlFor="preset">Built-in prompts</label>
      <select
        id="preset"
        value=""
        disabled={prompts.length === 0}
        onChange={(e) => {
          const p = prompts[Number(e.target.value)];
          if (p) onChange({ prompt: p.prompt });
        }}
      >
        <option value="">{prompts.length ? `Choose one of ${prompts.length}…` : "(none loaded)"}</option>
        {categories.map((c) => (
          <optgroup key={c} label={c}>
            {prompts.map((p, i) =>
              (p.category || "other") === c ? (
                <option key={i} value={i}>
                  {p.name}
                </option>
              ) : null,
            )}
          </optgroup>
        ))}
      </select>

      <label htmlFor="prompt">Prompt</label>
      <textarea
        id="prompt"
        rows={5}
        value={values.prompt}
        placeholder="Ask something… (Ctrl+Enter runs)"
        onChange={(e) => onChange({ prompt: e.target.value })}
        onKeyDown={onPromptKey}
      />

      <details className="system">
        <summary>System prompt{values.system ? " (set)" : ""}</summary>
        <textarea
          id="system"
          aria-label="System prompt"
          rows={3}
          value={values.system}
          placeholder="Optional"
          onChange={(e) => onChange({ system: e.target.value })}
        />
      </details>

      <div className="row">
        <div className="field">
          <label htmlFor="max-tokens">Max tokens</label>
          <input
            id="max-tokens"
            type="number"
            min={1}
            max={tokenLimit}
            step={1}
            value={values.maxTokens}
            onChange={(e) => onChange({ maxTokens: e.target.value })}
          />
        </div>
        <div className="field">
          <label htmlFor="seed">Seed</label>
          <input
            id="seed"
            type="number"
            min={0}
            step={1}
            placeholder="random"
            value={values.seed}
            onChange={(e) => onChange({ seed: e.target.value })}
          />
        </div>
      </div>

      <fieldset className="modes">
        <legend>Mode</legend>
        {MODES.map((m) => (
          <label key={m.value} className="mode-option" title={m.hint}>
            <input
              type="radio"
              name="mode"
              value={m.value}
              checked={values.mode === m.value}
              onChange={() => onChange({ mode: m.value })}
            />
            <span>{m.label}</span>
          </label>
        ))}
        <p className="muted small">{MODES.find((m) => m.value === values.mode)?.hint}</p>
      </fieldset>

      <div className="actions">
        <button type="submit" className="primary" disabled={running}>
          {values.mode === "compare" ? "Compare" : "Generate"}
        </button>
        <button type="button" className="danger" onClick={onStop} disabled={!running}>
          Stop
        </button>
      </div>
    </form>
  );
}
