import { memo } from "react";
import type { TokenEvent } from "../generated/events";
import { stateColour, tokenDescription, withAlpha, type StateTable } from "../format";

/** A token's text with newlines made visible (↵) and kept as real line breaks. */
export function TokenText({ text }: { text: string }) {
  if (text === "") return <span className="tok-empty" aria-hidden="true" />;
  const lines = text.split("\n");
  return (
    <>
      {lines.map((line, i) => (
        <span key={i}>
          {i > 0 && (
            <>
              <span className="tok-nl" aria-hidden="true">
                ↵
              </span>
              {"\n"}
            </>
          )}
          {line}
        </span>
      ))}
    </>
  );
}

interface Props {
  ev: TokenEvent;
  table: StateTable;
  domId: string;
  selected: boolean;
  focusable: boolean;
  onInspect: (index: number, pin: boolean) => void;
  inAnswer?: boolean; // inside the answer span the confidence was computed on
}

/** One generated token: coloured by state, its state also given as text (aria-label, title). */
export const Token = memo(function Token({ ev, table, domId, selected, focusable, onInspect, inAnswer = false }: Props) {
  const colour = stateColour(ev.state, table);
  const description = tokenDescription(ev, table);
  return (
    <span
      id={domId}
      className={(selected ? "tok selected" : "tok") + (inAnswer ? " in-answer" : "")}
      data-state={ev.state}
      data-index={ev.index}
      role="button"
      aria-pressed={selected}
      aria-label={description}
      title={description}
      tabIndex={focusable ? 0 : -1}
      style={{ backgroundColor: withAlpha(colour, 0.24), borderBottomColor: colour }}
      onMouseEnter={() => onInspect(ev.index, false)}
      onFocus={() => onInspect(ev.index, true)}
      onClick={() => onInspect(ev.index, true)}
    >
      <TokenText text={ev.text} />
    </span>
  );
});
