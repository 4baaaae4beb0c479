from django.urls import re_path

from analytics import views

urlpatterns = [
    re_path(r"^analytics/summary/?$", views.SummaryView.as_view(), name="analytics-summary"),
    re_path(r"^analytics/usage/?$", views.UsageView.as_view(), name="analytics-usage"),
]
