package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"kuredcheck/timewindow"
)

type c struct {
	Days  []string `json:"days"`
	Start string   `json:"start"`
	End   string   `json:"end"`
	Loc   string   `json:"loc"`
	Ns    int64    `json:"ns"`
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	for in.Scan() {
		var x c
		if err := json.Unmarshal(in.Bytes(), &x); err != nil {
			panic(err)
		}
		tw, err := timewindow.New(x.Days, x.Start, x.End, x.Loc)
		if err != nil {
			fmt.Fprintln(out, "error")
			continue
		}
		fmt.Fprintln(out, tw.Contains(time.Unix(0, x.Ns)))
	}
}
