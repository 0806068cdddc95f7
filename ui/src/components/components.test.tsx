import { describe, expect, test } from "bun:test";
import { renderToStaticMarkup } from "react-dom/server";
import { STATE_INFO, STATES } from "../generated/events";
import { stateTable } from "../format";
import { done, fork, token } from "../test/fixtures";
import { ForkMarker } from "./ForkMarker";
import { ForkView } from "./ForkView";
import { StatsBar } from "./StatsBar";
import { TokenStream } from "./TokenStream";
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
  test("a token that is part of a character says so, and so do its alternatives", () => {
    const first = { ...token(0, "", "flowing"), top: [{ id: 10813, text: "\ufffd", logprob: -1 }] };
    const html = renderToStaticMarkup(<Inspector ev={first} table={table} pinned />);
    expect(html).toContain('data-testid="insp-partial"');
    expect(html).toContain('data-testid="insp-top-partial"');
    const whole = renderToStaticMarkup(<Inspector ev={token(1, "Hi", "flowing")} table={table} pinned />);
    expect(whole).not.toContain("insp-partial");
    expect(whole).not.toContain("insp-top-partial");
  });

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

  test("normal mode: fixed parameters, and the state is measured only", () => {
    const html = renderToStaticMarkup(<Inspector ev={token(1, "x", "adaptive", "normal")} table={table} pinned />);
    expect(html).not.toContain("adjusted");
    expect(html).toContain("fixed base parameters");
    expect(html).toContain("normal mode does not act on the state");
    expect(renderToStaticMarkup(<Inspector ev={token(1, "x", "adaptive")} table={table} pinned />)).not.toContain("does not act");
  });

  test("a token chosen by a fork says so", () => {
    const html = renderToStaticMarkup(<Inspector ev={token(2, "x", "exploring", "fork")} table={table} pinned fork={fork(2, 1)} />);
    expect(html).toContain("kept branch 2 of 3 (score 0.82)");
  });

  test("empty state explains how to inspect", () => {
    expect(renderToStaticMarkup(<Inspector ev={null} table={table} pinned={false} />)).toContain("arrow keys");
  });
});

describe("forks", () => {
  test("the marker stands right before the token at the fork's index", () => {
    const tokens = [token(0, "A", "flowing", "fork"), token(1, "B", "flowing", "fork"), token(2, "C", "flowing", "fork")];
    const html = renderToStaticMarkup(
      <TokenStream
        run={{ mode: "fork", tokens, forks: [fork(1)] }}
        table={table}
        selected={null}
        running={false}
        onInspect={noop}
        onLeave={noop}
      />,
    );
    const marker = html.indexOf('data-testid="fork-marker"');
    expect(marker).toBeGreaterThan(html.indexOf('id="tok-fork-0"'));
    expect(marker).toBeLessThan(html.indexOf('id="tok-fork-1"'));
    expect(html.match(/data-testid="fork-marker"/g)).toHaveLength(1);
  });

  test("a fork whose tokens have not arrived yet is marked at the end", () => {
    const html = renderToStaticMarkup(
      <TokenStream run={{ mode: "fork", tokens: [], forks: [fork(0)] }} table={table} selected={null} running onInspect={noop} onLeave={noop} />,
    );
    expect(html).toContain('data-testid="fork-marker"');
  });

  test("the marker says what it opens", () => {
    const html = renderToStaticMarkup(<ForkMarker fork={fork(4)} open={false} onToggle={noop} />);
    expect(html).toContain('aria-expanded="false"');
    expect(html).toContain("Fork before token #4: 3 branches");
    expect(html).toContain(">3<");
  });

  test("the view lists every branch with first token, text, score and answer; the kept one marked", () => {
    const html = renderToStaticMarkup(<ForkView fork={fork(2, 1)} onClose={noop} />);
    expect(html.match(/data-testid="fork-branch"/g)).toHaveLength(3);
    expect(html.match(/data-kept="true"/g)).toHaveLength(1);
    expect(html).toContain('class="branch kept"');
    for (const x of ["0.31", "0.82", "0.05", "Oslo", "Reykjavik", "&quot; Oslo&quot;", " Oslo is", "15 tokens computed", "the first token", "answer_margin"])
      expect(html).toContain(x);
    expect(html).toContain("&lt;b&gt;x&lt;/b&gt;"); // branch text is text
    expect(html).not.toContain("<b>");
    expect(html).toContain("(best)");
  });

  test("the view shows the answers the branches reached, which won and by how much", () => {
    const html = renderToStaticMarkup(<ForkView fork={fork(2, 1)} onClose={noop} />);
    expect(html.match(/data-testid="answer-group"/g)).toHaveLength(2);
    expect(html.match(/data-won="true"/g)).toHaveLength(1);
    expect(html.indexOf("Reykjavik</code>")).toBeLessThan(html.indexOf("Oslo</code>"));
    expect(html).toContain("the highest summed score wins");
    expect(html).toContain("leads &quot;Oslo&quot; by 0.51");
    const none = renderToStaticMarkup(<ForkView fork={{ ...fork(2, 1), groups: [] }} onClose={noop} />);
    expect(none).not.toContain('data-testid="answer-groups"');
  });

  test("stats bar: forks and tokens computed vs emitted once done", () => {
    const d = { ...done("fork", 10), forks: 2, tokens_computed: 40 };
    const html = renderToStaticMarkup(<StatsBar run={{ mode: "fork", tokens: [], done: d }} table={table} />);
    expect(html).toContain('data-testid="stat-forks">2<');
    expect(html).toContain("40 / 10 (4.0×)");
    expect(renderToStaticMarkup(<StatsBar run={{ mode: "entropix", tokens: [], done: done() }} table={table} />)).not.toContain("computed");
  });

  test("stats bar: no first token, no time to it (the server's 0.0 is not '0 ms')", () => {
    const empty = { ...done("entropix", 0), ttft_s: 0 };
    const html = renderToStaticMarkup(<StatsBar run={{ mode: "entropix", tokens: [], done: empty }} table={table} />);
    expect(html).toContain('data-testid="stat-ttft">–<');
    const one = renderToStaticMarkup(<StatsBar run={{ mode: "entropix", tokens: [], done: { ...done("entropix", 1), ttft_s: 0.25 } }} table={table} />);
    expect(one).toContain('data-testid="stat-ttft">250 ms<');
  });
});
