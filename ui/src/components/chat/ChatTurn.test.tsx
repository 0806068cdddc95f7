import { describe, expect, test } from "bun:test";
import { renderToStaticMarkup } from "react-dom/server";
import { stateTable } from "../../format";
import { done, token } from "../../test/fixtures";
import type { AssistantTurn } from "../../chat/conversation";
import { AssistantTurnView, UserTurnView } from "./ChatTurn";

const table = stateTable();
const noop = () => undefined;
const settings = { modes: ["entropix", "normal"] as const, max_tokens: 4, seed: 1, sampler: null, system: null };

function turn(extra: Partial<AssistantTurn> = {}): AssistantTurn {
  return {
    role: "assistant",
    id: "a1",
    status: "done",
    chosen: "entropix",
    settings: { ...settings, modes: [...settings.modes] },
    runs: [
      { mode: "entropix", tokens: [token(0, "Hi"), token(1, "!")], done: done("entropix", 2) },
      { mode: "normal", tokens: [token(0, "Yo", "flowing", "normal")], done: done("normal", 1) },
    ],
    ...extra,
  };
}

const render = (t: AssistantTurn, last: boolean, busy = false) =>
  renderToStaticMarkup(
    <AssistantTurnView turn={t} last={last} busy={busy} table={table} thresholds={null} pinned={null} openFork={null}
      onInspect={noop} onLeave={noop} onToggleFork={noop} onRegenerate={noop} onChoose={noop} />,
  );

describe("chat turns", () => {
  test("the last answer offers regenerate and the other pick; earlier answers do not", () => {
    const last = render(turn(), true);
    expect(last).toContain('data-testid="regenerate"');
    expect(last).toContain('data-testid="choose-normal"');
    expect(last).not.toContain('data-testid="choose-entropix"'); // already the pick
    expect(last).toContain("continues the conversation");
    const earlier = render(turn(), false);
    expect(earlier).not.toContain("regenerate");
    expect(earlier).not.toContain("choose-");
    expect(render(turn(), true, true)).not.toContain("regenerate"); // while an answer streams
  });

  test("token ids are unique per turn, so keyboard moves stay in their turn", () => {
    expect(render(turn(), true)).toContain('id="tok-a1-entropix-1"');
  });

  test("an answer's marked span comes with its confidence badge, as in the single-prompt view", () => {
    const d = { ...done("entropix", 2), text: "Hi!", confidence: 0.83, answer_span: [0, 2] };
    const html = render(turn({ runs: [{ mode: "entropix", tokens: [token(0, "Hi"), token(1, "!")], done: d }] }), true);
    expect(html).toContain("tok in-answer");
    expect(html).toContain('data-testid="confidence"');
    expect(html).toContain("likely right · 83%");
    expect(html).toContain("<mark>Hi</mark>");
    expect(render(turn(), true)).not.toContain('data-testid="confidence"'); // no confidence: no badge
  });

  test("an interrupted answer says so and keeps its tokens", () => {
    const html = render(turn({ status: "interrupted", error: "The stream broke off" }), true);
    expect(html).toContain('data-status="interrupted"');
    expect(html).toContain("interrupted</strong>: The stream broke off (the partial answer is kept)");
    expect((html.match(/class="tok[ "]/g) ?? []).length).toBe(3);
  });

  test("user text is shown as text; only the last message is editable", () => {
    const u = { role: "user" as const, id: "u1", content: "<b>hi</b>" };
    const html = renderToStaticMarkup(<UserTurnView turn={u} editable onResend={() => true} />);
    expect(html).toContain("&lt;b&gt;hi&lt;/b&gt;");
    expect(html).toContain('data-testid="edit"');
    expect(renderToStaticMarkup(<UserTurnView turn={u} editable={false} onResend={() => true} />)).not.toContain('data-testid="edit"');
  });
});
