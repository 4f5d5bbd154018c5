"""Signal receivers (wired in ``ShopRecoConfig.ready``); the pipeline adds the per-user refresh."""
