// Single prompt or conversation. The choice is in the address (#chat), so a reload, a
// bookmark or a shared link opens the same view.
import { useCallback, useEffect, useState } from "react";

export type View = "prompt" | "chat";

const fromHash = (): View => (typeof location !== "undefined" && location.hash === "#chat" ? "chat" : "prompt");

export function useView(): [View, (v: View) => void] {
  const [view, setView] = useState<View>(fromHash);
  useEffect(() => {
    const onHash = () => setView(fromHash());
    window.addEventListener("hashchange", onHash);
    return () => window.removeEventListener("hashchange", onHash);
  }, []);
  const choose = useCallback((v: View) => {
    history.replaceState(null, "", v === "chat" ? "#chat" : location.pathname + location.search);
    setView(v);
  }, []);
  return [view, choose];
}

export function ViewSwitch({ view, onChange, disabled }: { view: View; onChange: (v: View) => void; disabled?: boolean }) {
  const item = (v: View, label: string) => (
    <button type="button" className={view === v ? "tab active" : "tab"} aria-pressed={view === v} data-testid={`view-${v}`} disabled={disabled && view !== v} onClick={() => onChange(v)}>
      {label}
    </button>
  );
  return (
    <nav className="view-switch" aria-label="View">
      {item("prompt", "Single prompt")}
      {item("chat", "Chat")}
    </nav>
  );
}
