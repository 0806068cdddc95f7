import { describe, expect, test } from "bun:test";
import { retryUntilLoaded } from "./retry";

describe("retryUntilLoaded", () => {
  test("a server that starts after the page: the errors, then the value once it answers", async () => {
    let calls = 0;
    const load = async () => {
      calls++;
      if (calls < 3) throw new Error(`down ${calls}`);
      return "config";
    };
    const errors: string[] = [];
    const loaded = await new Promise<string>((resolve) => {
      retryUntilLoaded(load, resolve, (err) => errors.push((err as Error).message), 1, 4);
    });
    expect(loaded).toBe("config");
    expect(errors).toEqual(["down 1", "down 2"]);
    expect(calls).toBe(3);
  });

  test("cancelled: no further try and no callback", async () => {
    let calls = 0;
    const seen: unknown[] = [];
    const cancel = retryUntilLoaded(
      async () => {
        calls++;
        throw new Error("down");
      },
      (v) => seen.push(v),
      (e) => seen.push(e),
      1,
      1,
    );
    await Bun.sleep(20);
    cancel();
    const n = calls;
    await Bun.sleep(20);
    expect(calls).toBe(n);
    expect(n).toBeGreaterThan(1);
  });
});
