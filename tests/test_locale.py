import pytest


@pytest.mark.smoke
def test_ui_defaults_to_the_deployment_language_and_follows_the_menu_choice(client, settings, db):
    settings.LANGUAGE_CODE = "zh-hans"
    page = client.get("/accounts/login/", HTTP_ACCEPT_LANGUAGE="en-US,en;q=0.9").content.decode()
    assert "登录" in page  # Chinese although the browser asks for English
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    page = client.get("/accounts/login/", HTTP_ACCEPT_LANGUAGE="zh-CN").content.decode()
    assert "Log in" in page and "登录" not in page
