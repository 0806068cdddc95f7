// Chart colours that follow the page's light/dark scheme (canvas cannot read CSS variables).
import { useEffect, useState } from "react";

export interface ThemeColours {
  fg: string;
  muted: string;
  grid: string;
  line1: string;
  line2: string;
  threshold: string;
}

const LIGHT: ThemeColours = {
  fg: "#1d232a",
  muted: "#5b6570",
  grid: "rgba(0,0,0,0.08)",
  line1: "#2b3440",
  line2: "#8a94a0",
  threshold: "#7a4a9a",
};
const DARK: ThemeColours = {
  fg: "#e6e9ed",
  muted: "#a3adb8",
  grid: "rgba(255,255,255,0.10)",
  line1: "#dfe4ea",
  line2: "#8d98a5",
  threshold: "#c9a3e6",
};

const query = () =>
  typeof window !== "undefined" && window.matchMedia ? window.matchMedia("(prefers-color-scheme: dark)") : null;

export function useThemeColours(): ThemeColours {
  const [dark, setDark] = useState(() => query()?.matches ?? false);
  useEffect(() => {
    const q = query();
    if (!q) return;
    const on = (e: MediaQueryListEvent) => setDark(e.matches);
    q.addEventListener("change", on);
    return () => q.removeEventListener("change", on);
  }, []);
  return dark ? DARK : LIGHT;
}
