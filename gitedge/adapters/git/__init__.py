"""The fleet repo's git side: fetch, bundles, objects read with caps."""
