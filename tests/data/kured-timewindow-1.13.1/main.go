package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"kuredcheck/timewindow"
)

type req struct {
	Days  []string `json:"days"`
	Start string   `json:"start"`
	End   string   `json:"end"`
	Zone  string   `json:"zone"`
	Unix  int64    `json:"unix"`
}

func main() {
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r req
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			panic(err)
		}
		tw, err := timewindow.New(r.Days, r.Start, r.End, r.Zone)
		if err != nil {
			fmt.Println("error:", err)
			continue
		}
		fmt.Println(tw.Contains(time.Unix(r.Unix, 0)))
	}
}
