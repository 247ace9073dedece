def reads(cfg):
    return False
