// Loading what the page needs from a server that may start after it.

/**
 * Call `load` until it resolves, then `onLoad` with its value. After each failure `onError`
 * gets the error and the next try waits `first` ms, doubling up to `max` ms. Returns a function
 * that cancels: no further try, no callback.
 */
export function retryUntilLoaded<T>(
  load: () => Promise<T>,
  onLoad: (value: T) => void,
  onError: (err: unknown) => void,
  first = 1000,
  max = 10_000,
): () => void {
  let cancelled = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const attempt = (wait: number) => {
    load().then(
      (value) => {
        if (!cancelled) onLoad(value);
      },
      (err) => {
        if (cancelled) return;
        onError(err);
        timer = setTimeout(() => attempt(Math.min(max, wait * 2)), wait);
      },
    );
  };
  attempt(first);
  return () => {
    cancelled = true;
    clearTimeout(timer);
  };
}
