import { describe, expect, test } from "bun:test";
import { renderToStaticMarkup } from "react-dom/server";
import { STATE_INFO, STATES } from "../generated/events";
import { stateTable } from "../format";
import { token } from "../test/fixtures";
import { Inspector } from "./Inspector";
import { Legend } from "./Legend";
import { Token, TokenText } from "./Token";

const table = stateTable();
const noop = () => undefined;

describe("Token", () => {
  test("markup in token text is escaped text, never HTML", () => {
    for (const text of ["<script>window.__xss=1</script>", '<img src=x onerror="window.__xss=1">']) {
      const html = renderToStaticMarkup(
        <Token ev={token(0, text)} table={table} domId="t0" selected={false} focusable onInspect={noop} />,
      );
      expect(html).not.toContain("<script");
      expect(html).not.toContain("<img");
      expect(html).toContain("&lt;");
    }
  });

  test("state is given as colour AND as text", () => {
    const html = renderToStaticMarkup(
      <Token ev={token(3, "fork", "exploring")} table={table} domId="t3" selected={false} focusable={false} onInspect={noop} />,
    );
    expect(html).toContain('data-state="exploring"');
    expect(html).toContain(`aria-label="&quot;fork&quot;: ${STATE_INFO.exploring.label}`);
    expect(html).toContain(`title="&quot;fork&quot;: ${STATE_INFO.exploring.label}`);
    expect(html).toContain("border-bottom-color:#E69F00");
    expect(html).toContain('tabindex="-1"');
  });

  test("newlines are visible and kept as real line breaks", () => {
    const html = renderToStaticMarkup(<TokenText text={"a\n\nb"} />);
    expect(html.match(/↵/g)).toHaveLength(2);
    expect(html.match(/\n/g)).toHaveLength(2);
    expect(renderToStaticMarkup(<TokenText text="" />)).toContain("tok-empty");
  });
});

describe("Legend", () => {
  test("lists every state with its label and counts", () => {
    const html = renderToStaticMarkup(<Legend table={table} counts={{ flowing: 3 }} />);
    for (const s of STATES) expect(html).toContain(STATE_INFO[s].label);
    expect(html).toContain('<span class="legend-count">3</span>');
  });
});

describe("Inspector", () => {
  test("shows all six metrics, state, action, params and alternatives with probabilities", () => {
    const html = renderToStaticMarkup(<Inspector ev={token(1, "<b>x</b>", "adaptive")} table={table} pinned />);
    for (const label of [
      "Entropy",
      "Varentropy",
      "Attention entropy",
      "Attention varentropy",
      "Head disagreement",
      "Interaction strength",
    ])
      expect(html).toContain(`>${label}<`);
    expect(html).toContain(STATE_INFO.adaptive.label);
    expect(html).toContain("sample (drew with adjusted parameters)");
    expect(html).toContain(">27<"); // top_k
    expect(html).toContain("75.0%");
    expect(html).toContain("20.0%");
    expect(html).toContain("&lt;b&gt;x&lt;/b&gt;");
    expect(html).toContain("3.21"); // attention entropy
  });

  test("empty state explains how to inspect", () => {
    expect(renderToStaticMarkup(<Inspector ev={null} table={table} pinned={false} />)).toContain("arrow keys");
  });
});
